"""The master's journal: append-only msgpack records plus periodic snapshots, in one folder.

Theory of operation
-------------------
1. **Framing** (pure, ``encode_record``/``decode_records``): each record is
   ``length (u32 LE) | xxh3_64 (u64 LE) | payload``, the payload being msgpack
   ``[kind, body]`` and the checksum covering the length and the payload, so
   a torn write or a flipped bit ends the readable journal right there.
2. **Files**: ``snapshot`` holds one framed record ``{"journal": N, "state":
   {...}}``; the records written since that snapshot go to ``journal-N``.
   Only those two are live; anything else (an older journal, a newer empty
   one, a ``snapshot.tmp``) is the leftover of an interrupted checkpoint and
   is removed on open.
3. **Checkpoint** to ``N+1``: create ``journal-(N+1)`` empty and fsync the
   folder; write ``snapshot.tmp`` naming ``N+1``, fsync it, rename it over
   ``snapshot``; from then on append to ``journal-(N+1)``; fsync the folder
   and unlink ``journal-N``. A crash before the rename leaves the old snapshot and its
   full journal; after it, the new snapshot and an empty (or missing)
   journal: both replay to the same state, so no step can lose or double a
   record.
4. **Replay** (``Journal.open``): the snapshot's state, then every record of
   its journal up to the first torn or corrupt one, where the file is
   truncated (with a warning) so later appends follow good records. A corrupt
   *snapshot* is not a torn tail (it was renamed into place whole): opening
   fails with ``JournalError`` rather than silently forgetting state.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import xxhash

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<IQ")
HEADER_SIZE = _HEADER.size
MAX_RECORD = 64 * 1024 * 1024
"""Largest payload accepted: a length beyond it is garbage, not a record."""
SNAPSHOT = "snapshot"
_JOURNAL_RE = re.compile(r"^journal-(\d{8})$")


class JournalError(Exception):
    """The journal folder cannot be used (permissions, a damaged snapshot)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One journaled event: ``kind`` names it (``"jobs/created"``), ``body`` is msgpack-able."""

    kind: str
    body: Any


# ---- framing (pure) ----------------------------------------------------------------


def encode_record(kind: str, body: Any) -> bytes:
    """One framed record; raises TypeError if ``body`` is not msgpack-able."""
    payload: bytes = msgpack.packb([kind, body], use_bin_type=True)
    if len(payload) > MAX_RECORD:
        raise ValueError(f"journal record {kind!r} is {len(payload)} bytes, over {MAX_RECORD}")
    length = struct.pack("<I", len(payload))
    return _HEADER.pack(len(payload), xxhash.xxh3_64_intdigest(length + payload)) + payload


def _frames(buf: bytes) -> Iterator[tuple[int, Record]]:
    """(end offset, record) of each good frame from the start, stopping at the first bad one."""
    pos = 0
    while pos + HEADER_SIZE <= len(buf):
        length, digest = _HEADER.unpack_from(buf, pos)
        end = pos + HEADER_SIZE + length
        if length > MAX_RECORD or end > len(buf):
            return
        payload = buf[pos + HEADER_SIZE : end]
        if xxhash.xxh3_64_intdigest(buf[pos : pos + 4] + payload) != digest:
            return
        try:
            kind, body = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        except (ValueError, TypeError, msgpack.UnpackException):
            return
        if not isinstance(kind, str):
            return
        yield end, Record(kind, body)
        pos = end


def decode_records(buf: bytes) -> tuple[list[Record], int]:
    """The good records at the start of ``buf`` and the byte length they span.

    Bytes after that length are a torn or corrupt tail (or nothing).
    """
    records: list[Record] = []
    good = 0
    for end, rec in _frames(buf):
        records.append(rec)
        good = end
    return records, good


# ---- files -------------------------------------------------------------------------


def _journal_name(n: int) -> str:
    return f"journal-{n:08d}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """An open journal folder: ``append`` records, ``checkpoint`` a snapshot, ``close``.

    Not thread-safe; the master calls it from its event loop (control-plane
    events are rare, so each append may fsync inline: see ``sync``).
    """

    def __init__(self, path: Path, number: int, fd: int, *, sync: bool) -> None:
        self.path = path
        self.number = number
        """Which ``journal-N`` takes appends (the one the snapshot names)."""
        self.sync = sync
        """fsync after every append (the default): a record is on disk when ``append`` returns."""
        self.appended = 0
        """Records in the live journal file: appended since the last checkpoint, or replayed."""
        self._fd = fd
        self._size = os.fstat(fd).st_size
        """Bytes of good records: a failed append is cut back to it, never left as a torn middle."""

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, sync: bool = True
    ) -> tuple[Journal, dict[str, Any], list[Record]]:
        """Open (creating if needed) the journal in ``path``: (journal, snapshot state, records after it)."""
        p = Path(path)
        try:
            p.mkdir(parents=True, exist_ok=True)
            number, state = _read_snapshot(p)
            records = _replay(p / _journal_name(number))
            _remove_leftovers(p, number)
            fd = os.open(p / _journal_name(number), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except PermissionError as exc:
            raise JournalError(f"cannot use journal folder {p}: permission denied ({exc.filename})") from None
        except OSError as exc:
            raise JournalError(f"cannot use journal folder {p}: {exc.strerror or exc}") from None
        j = cls(p, number, fd, sync=sync)
        j.appended = len(records)
        return j, state, records

    def append(self, kind: str, body: Any) -> None:
        """Write one record at the end of the journal (and fsync it unless ``sync`` is off)."""
        data = encode_record(kind, body)
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(f"journal {self.path}: short write ({written} of {len(data)} bytes)")
            if self.sync:
                os.fdatasync(self._fd)
        except OSError:
            # A full disk: cut the half frame, else later good records would follow a torn one
            # and replay would stop before them.
            os.ftruncate(self._fd, self._size)
            raise
        self._size += len(data)
        self.appended += 1

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Make ``state`` the snapshot and start an empty journal (crash-safe at every step)."""
        nxt = self.number + 1
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC
        new_fd = os.open(self.path / _journal_name(nxt), flags, 0o644)
        try:
            _fsync_dir(self.path)
            tmp = self.path / (SNAPSHOT + ".tmp")
            with open(tmp, "wb") as f:
                f.write(encode_record("snapshot", {"journal": nxt, "state": state}))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path / SNAPSHOT)
        except BaseException:
            os.close(new_fd)
            raise
        # The snapshot names journal-(N+1) now: appends must go there, whatever fails next.
        old_fd, old = self._fd, self.number
        self._fd, self.number, self.appended, self._size = new_fd, nxt, 0, 0
        os.close(old_fd)
        _fsync_dir(self.path)
        (self.path / _journal_name(old)).unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _read_snapshot(p: Path) -> tuple[int, dict[str, Any]]:
    try:
        data = (p / SNAPSHOT).read_bytes()
    except FileNotFoundError:
        return 0, {}
    records, good = decode_records(data)
    if len(records) != 1 or good != len(data) or records[0].kind != "snapshot":
        raise JournalError(f"snapshot {p / SNAPSHOT} is damaged; move it away to start empty")
    body = records[0].body
    if not isinstance(body, dict) or not isinstance(body.get("journal"), int):
        raise JournalError(f"snapshot {p / SNAPSHOT} is not a pipecache snapshot")
    state = body.get("state")
    return body["journal"], state if isinstance(state, dict) else {}


def _replay(file: Path) -> list[Record]:
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return []
    records, good = decode_records(data)
    if good < len(data):
        log.warning(
            "journal %s: dropped a torn or corrupt tail of %d bytes after %d good records",
            file,
            len(data) - good,
            len(records),
        )
        with open(file, "r+b") as f:
            f.truncate(good)
            os.fsync(f.fileno())
    return records


def _remove_leftovers(p: Path, number: int) -> None:
    """Journals other than ``journal-number`` and a stray ``snapshot.tmp``: an interrupted checkpoint."""
    for child in p.iterdir():
        m = _JOURNAL_RE.match(child.name)
        if (m and int(m.group(1)) != number) or child.name == SNAPSHOT + ".tmp":
            child.unlink(missing_ok=True)

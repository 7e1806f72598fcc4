"""The SSD tier: one checksummed file per block, laid out like diskcache's ``Disk``.

Layout: ``root/ab/cd/abcd0123456789ef.blk``. Two levels of fan-out by the id's
leading hex keep every folder small (at most 256 entries per level), as
``diskcache.Disk.filename`` does. Each file is a fixed header followed by the
payload::

    magic b"PCB1" | version u16 | reserved u16 | payload length u64 | xxh3_64(payload) u64

Writes go to a temporary name in the same folder, created with ``'xb'`` so two
writers never share a file, then ``os.replace`` makes the block appear whole
or not at all. fsync is off by default: the under-store holds the truth, and a
block torn by a crash fails its checksum and is dropped, never served.

The index (id -> length) lives in memory and is rebuilt at start-up by a cheap
scan (header and size, no hashing). A full hash is done on every read, and
``check()`` hashes everything. Index entries are removed *before* their files
are unlinked (diskcache's cleanup-list discipline): a reader never finds an
indexed block without a file, except through a race it handles as a miss.

Module functions do file I/O only; ``SsdTier`` pairs them with the index. The
tier is not thread-safe: ``TieredStore`` guards the index with its lock and
calls the file functions outside it.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import secrets
import struct
from dataclasses import dataclass
from typing import BinaryIO

import xxhash

from .blocks import BlockId, is_block_id
from .errors import CacheError, ChecksumMismatch, InterfaceError, NoCapacity
from .eviction import EvictionPolicy

MAGIC = b"PCB1"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sHHQQ")
HEADER_SIZE = _HEADER.size
BLOCK_SUFFIX = ".blk"
TMP_SUFFIX = ".tmp"


@dataclass(slots=True)
class SsdHandle:
    """An open, verified block file: send ``length`` bytes from ``offset``.

    The file stays readable after the block is evicted (POSIX keeps unlinked
    open files), so the caller can ``sendfile`` from it at leisure. Close it.
    """

    file: BinaryIO
    offset: int
    length: int

    def close(self) -> None:
        self.file.close()

    def view(self, start: int = 0, end: int | None = None) -> memoryview:
        """Bytes ``start:end`` of the payload as a view of the mapped file.

        A socket write copies straight from the page cache, as sendfile would.
        The map outlives the handle (and the file's eviction) for as long as the
        view does; block files are replaced by rename, never rewritten, so the
        mapped bytes stay put. CacheError if the file is shorter than it was.
        """
        end = self.length if end is None else end
        fd = self.file.fileno()
        size = os.fstat(fd).st_size
        if size < self.offset + end:
            raise CacheError(f"block file shrank to {size} bytes, {self.offset + end} expected")
        mapped = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        return memoryview(mapped)[self.offset + start : self.offset + end]

    def __enter__(self) -> SsdHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def file_size(length: int) -> int:
    """Bytes on disk for a payload of ``length`` bytes."""
    return HEADER_SIZE + length


def block_path(root: str, block_id: BlockId) -> str:
    """The file of ``block_id`` under ``root``; InterfaceError for a malformed id.

    Only 16 lowercase hex digits pass, so no id can climb out of ``root``.
    """
    if not is_block_id(block_id):
        raise InterfaceError(f"malformed block id {block_id!r}")
    return os.path.join(root, block_id[:2], block_id[2:4], block_id + BLOCK_SUFFIX)


def write_block(path: str, data: bytes, *, fsync: bool = False) -> None:
    """Write header + payload to ``path`` atomically (temp file, then rename)."""
    folder = os.path.dirname(path)
    tmp = f"{path}.{secrets.token_hex(8)}{TMP_SUFFIX}"
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(data), xxhash.xxh3_64_intdigest(data))
    try:
        f = open(tmp, "xb")
    except FileNotFoundError:  # the folder's first block: make it only then, not on every write
        os.makedirs(folder, exist_ok=True)
        f = open(tmp, "xb")
    try:
        with f:
            f.write(header)
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if fsync:  # make the rename itself durable
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_header(f: BinaryIO, size: int, path: str) -> tuple[int, int]:
    """(payload length, checksum) after checking magic, version and size."""
    raw = f.read(HEADER_SIZE)
    if len(raw) < HEADER_SIZE:
        raise ChecksumMismatch(f"{path}: truncated header ({len(raw)} bytes)")
    magic, version, _, length, checksum = _HEADER.unpack(raw)
    if magic != MAGIC or version != FORMAT_VERSION:
        raise ChecksumMismatch(f"{path}: bad magic or version {magic!r}/{version}")
    if file_size(length) != size:
        raise ChecksumMismatch(f"{path}: header says {length} payload bytes, file has {size}")
    return int(length), int(checksum)


def check_header(path: str) -> int:
    """Cheap check (header and file size, no hashing); returns the payload length."""
    with open(path, "rb") as f:
        return _read_header(f, os.fstat(f.fileno()).st_size, path)[0]


def open_block(path: str) -> SsdHandle:
    """Open and fully verify a block file.

    Raises ChecksumMismatch when the file is corrupt and FileNotFoundError when
    it is gone. The payload is hashed through ``mmap``, so it is never copied
    into Python bytes.
    """
    f = open(path, "rb")  # not a `with`: on success the caller owns it
    try:
        length, checksum = _read_header(f, os.fstat(f.fileno()).st_size, path)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            with memoryview(mm)[HEADER_SIZE:] as payload:
                actual = xxhash.xxh3_64_intdigest(payload)
        if actual != checksum:
            raise ChecksumMismatch(f"{path}: payload checksum mismatch")
    except BaseException:
        f.close()
        raise
    return SsdHandle(f, HEADER_SIZE, length)


def read_block(path: str) -> bytes:
    """The verified payload of a block file (errors as ``open_block``)."""
    with open(path, "rb") as f:
        length, checksum = _read_header(f, os.fstat(f.fileno()).st_size, path)
        data = f.read(length)
    if len(data) != length or xxhash.xxh3_64_intdigest(data) != checksum:
        raise ChecksumMismatch(f"{path}: payload checksum mismatch")
    return data


def unlink_quietly(paths: list[str]) -> None:
    """Delete files that may already be gone."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@dataclass(slots=True)
class _Entry:
    length: int
    generation: int
    """Distinguishes successive incarnations of one id, so a late drop of an old
    (corrupt or vanished) file never removes a newer, good one."""


class SsdTier:
    """Block files under ``root`` with an in-memory index and a byte budget.

    ``capacity_bytes`` and ``used`` count whole files (header included). The
    constructor scans ``root`` (see ``_scan``) and trims to the budget.
    """

    def __init__(
        self, root: str, capacity_bytes: int, policy: EvictionPolicy, *, fsync: bool = False
    ) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity_bytes}")
        self.root = os.path.abspath(root)
        self.fsync = fsync
        self._capacity = capacity_bytes
        self._policy = policy
        self._index: dict[BlockId, _Entry] = {}
        self._used = 0
        self._generations = itertools.count(1)
        self.corrupt_dropped = 0
        """Files found corrupt (at start-up, on read or by ``check``) and deleted."""
        self.trimmed = 0
        """Blocks evicted at start-up because the budget shrank."""
        os.makedirs(self.root, exist_ok=True)
        self._load()

    # -- index --------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def used(self) -> int:
        return self._used

    def path(self, block_id: BlockId) -> str:
        """Where ``block_id`` lives (whether or not it is resident)."""
        return block_path(self.root, block_id)

    def length(self, block_id: BlockId) -> int | None:
        """Payload length of an indexed block."""
        e = self._index.get(block_id)
        return None if e is None else e.length

    def generation(self, block_id: BlockId) -> int | None:
        """The current incarnation of an indexed block (for ``discard``)."""
        e = self._index.get(block_id)
        return None if e is None else e.generation

    def touch(self, block_id: BlockId) -> bool:
        """Count an access; False when not indexed."""
        if block_id not in self._index:
            return False
        self._policy.on_access(block_id)
        return True

    def add(self, block_id: BlockId, length: int) -> None:
        """Index a block whose file is already written (NoCapacity if over budget)."""
        old = self._index.get(block_id)
        used = self._used + file_size(length) - (0 if old is None else file_size(old.length))
        if used > self._capacity:
            raise NoCapacity(f"SSD tier full ({self._used}/{self._capacity} bytes)")
        self._index[block_id] = _Entry(length, next(self._generations))
        self._used = used
        self._policy.on_insert(block_id, file_size(length))

    def discard(
        self, block_id: BlockId, generation: int | None = None, *, corrupt: bool = False
    ) -> str | None:
        """Drop an index entry; returns the file to unlink *afterwards*, or None.

        With ``generation``, only that incarnation is dropped.
        """
        e = self._index.get(block_id)
        if e is None or (generation is not None and e.generation != generation):
            return None
        del self._index[block_id]
        self._used -= file_size(e.length)
        self._policy.on_remove(block_id)
        if corrupt:
            self.corrupt_dropped += 1
        return self.path(block_id)

    def victims(self, bytes_needed: int) -> list[BlockId]:
        """Blocks to remove, least valuable first, to free ``bytes_needed`` file bytes."""
        return self._policy.victims(bytes_needed)

    def ids(self) -> list[BlockId]:
        return list(self._index)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    # -- index + files --------------------------------------------------------

    def write_file(self, block_id: BlockId, data: bytes) -> None:
        """Write the block's file without indexing it (pair with ``add``)."""
        write_block(self.path(block_id), data, fsync=self.fsync)

    def put(self, block_id: BlockId, data: bytes) -> None:
        """Write and index a block; NoCapacity (and nothing written) if it does not fit."""
        old = self.length(block_id)
        delta = file_size(len(data)) - (0 if old is None else file_size(old))
        if self._used + delta > self._capacity:
            raise NoCapacity(f"block {block_id} does not fit on SSD")
        self.write_file(block_id, data)
        self.add(block_id, len(data))

    def remove(self, block_id: BlockId) -> bool:
        """Drop a block and delete its file; False when it was not indexed."""
        path = self.discard(block_id) if is_block_id(block_id) else None
        if path is None:
            return False
        unlink_quietly([path])
        return True

    def _drop(self, block_id: BlockId, generation: int, corrupt: bool) -> None:
        path = self.discard(block_id, generation, corrupt=corrupt)
        if path is not None:
            unlink_quietly([path])

    def open_verified(self, block_id: BlockId) -> SsdHandle | None:
        """Open a block after a full checksum, counting an access.

        None when absent; a corrupt file is deleted, dropped and counted.
        """
        gen = self.generation(block_id) if is_block_id(block_id) else None
        if gen is None:
            return None
        try:
            handle = open_block(self.path(block_id))
        except (ChecksumMismatch, FileNotFoundError) as exc:
            self._drop(block_id, gen, corrupt=isinstance(exc, ChecksumMismatch))
            return None
        self._policy.on_access(block_id)
        return handle

    def read(self, block_id: BlockId) -> bytes | None:
        """The verified payload, counting an access (None and dropped when corrupt)."""
        gen = self.generation(block_id) if is_block_id(block_id) else None
        if gen is None:
            return None
        try:
            data = read_block(self.path(block_id))
        except (ChecksumMismatch, FileNotFoundError) as exc:
            self._drop(block_id, gen, corrupt=isinstance(exc, ChecksumMismatch))
            return None
        self._policy.on_access(block_id)
        return data

    def check(self) -> int:
        """Repair pass: hash every indexed file, drop the bad or missing ones.

        Returns how many blocks were dropped. Does not change the ranking.
        """
        dropped = 0
        for block_id, e in list(self._index.items()):
            try:
                open_block(self.path(block_id)).close()
            except (ChecksumMismatch, FileNotFoundError) as exc:
                self._drop(block_id, e.generation, corrupt=isinstance(exc, ChecksumMismatch))
                dropped += 1
        return dropped

    # -- start-up ---------------------------------------------------------------

    def _load(self) -> None:
        found = self._scan()
        # Oldest files first, so the policy starts out ranking by file age.
        for _, block_id, length in sorted(found):
            self._index[block_id] = _Entry(length, next(self._generations))
            self._used += file_size(length)
            self._policy.on_insert(block_id, file_size(length))
        if self._used > self._capacity:
            doomed = self._policy.victims(self._used - self._capacity)
            unlink_quietly([p for b in doomed if (p := self.discard(b)) is not None])
            self.trimmed = len(doomed)

    def _scan(self) -> list[tuple[int, BlockId, int]]:
        """(mtime_ns, id, length) of every sound block file under root."""
        found: list[tuple[int, BlockId, int]] = []
        for d1 in _hex_dirs(self.root):
            for d2 in _hex_dirs(os.path.join(self.root, d1)):
                found += self._scan_folder(os.path.join(self.root, d1, d2), d1 + d2)
        return found

    def _scan_folder(self, folder: str, prefix: str) -> list[tuple[int, BlockId, int]]:
        """Sound block files of one leaf folder; deletes temp and corrupt files.

        Temp files are writes cut short by a crash. Anything not named like
        ours is left alone, so a mistaken ``root`` never loses foreign files.
        """
        out: list[tuple[int, BlockId, int]] = []
        with os.scandir(folder) as it:
            for entry in it:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if entry.name.endswith(TMP_SUFFIX):
                    unlink_quietly([entry.path])
                    continue
                block_id = entry.name.removesuffix(BLOCK_SUFFIX)
                if block_id == entry.name or not is_block_id(block_id):
                    continue
                if block_id[:4] != prefix:
                    continue  # not where we would look for it: not ours
                try:
                    length = check_header(entry.path)
                except ChecksumMismatch:
                    unlink_quietly([entry.path])
                    self.corrupt_dropped += 1
                    continue
                except FileNotFoundError:
                    continue
                out.append((entry.stat().st_mtime_ns, block_id, length))
        return out


def _hex_dirs(folder: str) -> list[str]:
    """Names of the two-hex-digit subfolders of ``folder``."""
    with os.scandir(folder) as it:
        return [
            e.name
            for e in it
            if len(e.name) == 2
            and all(c in "0123456789abcdef" for c in e.name)
            and e.is_dir(follow_symlinks=False)
        ]

"""The SSD tier: checksummed block files, fan-out layout, restart and repair."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import xxhash
from pipecache.tiering import ssd as ssd_mod
from pipecache.tiering.blocks import block_id
from pipecache.tiering.errors import CacheError, InterfaceError, NoCapacity
from pipecache.tiering.eviction import LRUPolicy
from pipecache.tiering.ssd import HEADER_SIZE, SsdTier, file_size

A, B, C = (block_id("m", "k", "e", i) for i in range(3))


def _tier(root: Path, capacity: int = 1 << 20, **kw: bool) -> SsdTier:
    return SsdTier(str(root), capacity, LRUPolicy(), **kw)


def _payload(bid: str, n: int = 1000) -> bytes:
    return (bid.encode() * (n // 16 + 1))[:n]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_layout_and_header(tmp_path: Path) -> None:
    t = _tier(tmp_path)
    data = _payload(A)
    t.put(A, data)
    path = tmp_path / A[:2] / A[2:4] / f"{A}.blk"
    assert _files(tmp_path) == [str(path.relative_to(tmp_path))]
    raw = path.read_bytes()
    magic, version, _, length, checksum = struct.unpack("<4sHHQQ", raw[:HEADER_SIZE])
    assert (magic, version, length) == (b"PCB1", 1, len(data))
    assert checksum == xxhash.xxh3_64_intdigest(data)
    assert raw[HEADER_SIZE:] == data
    assert t.used == file_size(len(data)) == len(raw)


def test_read_and_open_verified(tmp_path: Path) -> None:
    t = _tier(tmp_path)
    t.put(A, _payload(A))
    t.put(B, b"")  # an empty payload is a valid block
    assert t.read(A) == _payload(A)
    assert t.read(B) == b""
    with t.open_verified(A) as h:
        assert (h.offset, h.length) == (HEADER_SIZE, 1000)
        h.file.seek(h.offset)
        assert h.file.read(h.length) == _payload(A)
    assert h.file.closed
    assert t.read(C) is None and t.open_verified(C) is None


def test_handle_outlives_removal(tmp_path: Path) -> None:
    t = _tier(tmp_path)
    t.put(A, _payload(A))
    h = t.open_verified(A)
    assert h is not None
    assert t.remove(A) and not t.remove(A)
    assert _files(tmp_path) == [] and A not in t and t.used == 0
    os.lseek(h.file.fileno(), h.offset, os.SEEK_SET)
    assert os.read(h.file.fileno(), h.length) == _payload(A)  # what sendfile would send
    h.close()


def test_view_maps_the_payload_and_outlives_handle_and_file(tmp_path: Path) -> None:
    t = _tier(tmp_path)
    t.put(A, _payload(A))
    h = t.open_verified(A)
    assert h is not None
    whole, part = h.view(), h.view(10, 30)
    h.close()
    assert t.remove(A)
    assert bytes(whole) == _payload(A) and bytes(part) == _payload(A)[10:30]


def test_view_of_a_shrunk_file_is_an_error_not_short_bytes(tmp_path: Path) -> None:
    t = _tier(tmp_path)
    t.put(A, _payload(A))
    h = t.open_verified(A)
    assert h is not None
    os.truncate(tmp_path / A[:2] / A[2:4] / f"{A}.blk", HEADER_SIZE + 500)
    assert bytes(h.view(0, 500)) == _payload(A)[:500]
    with pytest.raises(CacheError, match="shrank"):
        h.view()
    h.close()


def _corrupt_payload(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[HEADER_SIZE + 5] ^= 0xFF
    path.write_bytes(bytes(raw))


def _corrupt_magic(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[0:4] = b"XXXX"
    path.write_bytes(bytes(raw))


def _corrupt_checksum(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[HEADER_SIZE - 1] ^= 0x01
    path.write_bytes(bytes(raw))


def _truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(HEADER_SIZE + 10)


def _truncate_header(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(7)


def _extend(path: Path) -> None:
    with path.open("ab") as f:
        f.write(b"junk")


CORRUPTIONS = [
    _corrupt_payload,
    _corrupt_magic,
    _corrupt_checksum,
    _truncate,
    _truncate_header,
    _extend,
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS)
@pytest.mark.parametrize("reader", ["read", "open_verified"])
def test_corrupt_file_is_dropped_on_read(
    tmp_path: Path, corrupt: Callable[[Path], None], reader: str
) -> None:
    t = _tier(tmp_path)
    t.put(A, _payload(A))
    t.put(B, _payload(B))
    corrupt(tmp_path / A[:2] / A[2:4] / f"{A}.blk")
    assert getattr(t, reader)(A) is None
    assert A not in t and t.corrupt_dropped == 1
    assert not (tmp_path / A[:2] / A[2:4] / f"{A}.blk").exists()
    assert t.used == file_size(1000)  # only B left
    assert t.read(B) == _payload(B)


@pytest.mark.parametrize("corrupt", [_corrupt_magic, _truncate, _truncate_header, _extend])
def test_cheap_scan_drops_bad_headers_and_sizes(
    tmp_path: Path, corrupt: Callable[[Path], None]
) -> None:
    _tier(tmp_path).put(A, _payload(A))
    _tier(tmp_path).put(B, _payload(B))
    corrupt(tmp_path / A[:2] / A[2:4] / f"{A}.blk")
    t = _tier(tmp_path)
    assert t.ids() == [B] and t.corrupt_dropped == 1
    assert not (tmp_path / A[:2] / A[2:4] / f"{A}.blk").exists()


def test_check_finds_what_the_scan_cannot(tmp_path: Path) -> None:
    t = _tier(tmp_path)
    for b in (A, B, C):
        t.put(b, _payload(b))
    _corrupt_payload(tmp_path / B[:2] / B[2:4] / f"{B}.blk")  # header and size still fine
    os.unlink(tmp_path / C[:2] / C[2:4] / f"{C}.blk")  # vanished behind our back
    t = _tier(tmp_path)
    assert sorted(t.ids()) == sorted([A, B])
    assert t.check() == 1
    assert t.ids() == [A] and t.corrupt_dropped == 1
    assert t.check() == 0


def test_restart_rebuilds_index_oldest_first(tmp_path: Path) -> None:
    t = _tier(tmp_path)
    for i, b in enumerate((A, B, C)):
        t.put(b, _payload(b, 100 * (i + 1)))
    # Make C the oldest file, then A, then B.
    for age, b in ((300, C), (200, A), (100, B)):
        path = tmp_path / b[:2] / b[2:4] / f"{b}.blk"
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - age * 10**9))
    again = _tier(tmp_path)
    assert sorted(again.ids()) == sorted([A, B, C])
    assert again.used == t.used
    assert again.length(B) == 200
    assert again.victims(1) == [C]
    assert again.victims(file_size(300) + 1) == [C, A]
    assert again.read(C) == _payload(C, 300)


def test_restart_trims_to_a_smaller_budget(tmp_path: Path) -> None:
    t = _tier(tmp_path)
    for b in (A, B, C):
        t.put(b, _payload(b))
    small = _tier(tmp_path, capacity=2 * file_size(1000))
    assert small.used <= small.capacity and len(small) == 2 and small.trimmed == 1
    assert len(_files(tmp_path)) == 2


def test_start_deletes_temp_files_and_leaves_foreign_files(tmp_path: Path) -> None:
    t = _tier(tmp_path)
    t.put(A, _payload(A))
    folder = tmp_path / A[:2] / A[2:4]
    (folder / f"{A}.blk.0123abcd.tmp").write_bytes(b"half a write")
    (folder / "README").write_text("not ours")
    (tmp_path / "notes.txt").write_text("not ours either")
    misplaced = tmp_path / "00" / "00" / f"{B}.blk"  # a block name in the wrong folder
    misplaced.parent.mkdir(parents=True)
    misplaced.write_bytes(b"?")
    again = _tier(tmp_path)
    assert again.ids() == [A]
    assert not (folder / f"{A}.blk.0123abcd.tmp").exists()
    assert (folder / "README").exists() and (tmp_path / "notes.txt").exists()
    assert misplaced.exists()


def test_failed_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = _tier(tmp_path)

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ssd_mod.os, "replace", boom)
    with pytest.raises(OSError):
        t.put(A, _payload(A))
    assert _files(tmp_path) == [] and A not in t and t.used == 0


def test_fsync_mode_writes_the_same_file(tmp_path: Path) -> None:
    t = _tier(tmp_path, fsync=True)
    t.put(A, _payload(A))
    assert t.read(A) == _payload(A)


def test_capacity_is_enforced(tmp_path: Path) -> None:
    t = _tier(tmp_path, capacity=file_size(1000) + file_size(500))
    t.put(A, _payload(A))
    with pytest.raises(NoCapacity):
        t.put(B, _payload(B, 501))
    assert _files(tmp_path) == [str(Path(A[:2]) / A[2:4] / f"{A}.blk")]
    t.put(B, _payload(B, 500))
    t.put(A, _payload(A, 1000))  # replacing in place does not double count
    assert t.used == t.capacity
    assert t.victims(1) == [B]  # A was just re-put


BAD_IDS = [
    "../../../../etc/passwd",
    "/tmp/evil",
    "..",
    "",
    "0123456789ABCDEF",
    "0123456789abcdef/",
    "abc",
]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_malformed_ids_are_refused(tmp_path: Path, bad: str) -> None:
    root = tmp_path / "root"
    t = _tier(root)
    with pytest.raises(InterfaceError):
        t.put(bad, b"data")
    with pytest.raises(InterfaceError):
        t.path(bad)
    assert t.read(bad) is None
    assert t.open_verified(bad) is None
    assert t.remove(bad) is False
    # Nothing was written anywhere, inside root or out of it.
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["root"]


def test_paths_stay_under_root(tmp_path: Path) -> None:
    t = _tier(tmp_path / "r")
    for i in range(200):
        b = block_id("m", "k", "e", i)
        p = Path(t.path(b)).resolve()
        assert p.is_relative_to((tmp_path / "r").resolve())
        assert p.parent.name == b[2:4] and p.parent.parent.name == b[:2]

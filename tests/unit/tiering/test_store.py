"""The tiered store: demotion, promotion, eviction, change tracking, threads."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest
from pipecache.tiering.blocks import block_id
from pipecache.tiering.errors import InterfaceError, NoCapacity
from pipecache.tiering.ssd import SsdTier, file_size
from pipecache.tiering.store import StoreConfig, TieredStore

N = 100  # payload size used by most tests
IDS = [block_id("m", "k", "e", i) for i in range(64)]


def _data(bid: str, n: int = N) -> bytes:
    return (bid.encode() * (n // 16 + 1))[:n]


def _store(
    tmp_path: Path | None, mem_blocks: int = 3, ssd_blocks: int = 3, **kw: object
) -> TieredStore:
    cfg = StoreConfig(
        memory_bytes=mem_blocks * N,
        ssd_dir=None if tmp_path is None else str(tmp_path / "ssd"),
        ssd_bytes=0 if tmp_path is None else ssd_blocks * file_size(N),
        **kw,
    )
    return TieredStore(cfg)


def _disk_bytes(tmp_path: Path) -> int:
    return sum(p.stat().st_size for p in (tmp_path / "ssd").rglob("*.blk"))


def _check_invariants(s: TieredStore, tmp_path: Path | None) -> None:
    use, cap = s.usage(), s.capacity()
    assert use["memory"] <= cap["memory"] and use["ssd"] <= cap["ssd"]
    if tmp_path is not None:
        assert _disk_bytes(tmp_path) == use["ssd"]
    ids = s.block_ids()
    assert len(ids) == len(set(ids))
    for b in ids:
        assert s.tier_of(b) is not None


# -- memory only ----------------------------------------------------------------------


def test_memory_only_evicts_least_recently_used() -> None:
    s = _store(None)
    for b in IDS[:3]:
        s.put(b, _data(b))
    view = s.get_memory(IDS[0])  # IDS[1] is now the oldest
    assert view is not None and bytes(view) == _data(IDS[0])
    s.put(IDS[3], _data(IDS[3]))
    assert s.tier_of(IDS[1]) is None
    assert sorted(s.block_ids()) == sorted([IDS[0], IDS[2], IDS[3]])
    assert s.stats()["evictions"] == 1
    assert s.capacity() == {"memory": 3 * N, "ssd": 0}
    _check_invariants(s, None)


def test_memory_only_rejects_a_block_larger_than_memory() -> None:
    s = _store(None)
    with pytest.raises(NoCapacity):
        s.put(IDS[0], b"x" * (3 * N + 1))
    assert s.block_ids() == []


def test_reput_is_an_access_not_a_change() -> None:
    s = _store(None)
    for b in IDS[:3]:
        s.put(b, _data(b))
    s.drain_changes()
    s.put(IDS[0], _data(IDS[0]))  # refreshes IDS[0]
    assert s.drain_changes() == ([], [])
    assert s.stats()["puts"] == 3
    s.put(IDS[3], _data(IDS[3]))
    assert s.tier_of(IDS[0]) == "memory" and s.tier_of(IDS[1]) is None


def test_malformed_ids(tmp_path: Path) -> None:
    s = _store(tmp_path)
    with pytest.raises(InterfaceError):
        s.put("../../etc/passwd", b"x")
    assert s.tier_of("../x") is None and s.get_memory("nope") is None
    assert s.open_ssd("../../x") is None and s.read("zz") is None
    assert s.remove(["../x", "bad"]) == 0
    assert not s.promote("../x")


# -- demotion, eviction, promotion ------------------------------------------------------


@pytest.mark.parametrize("policy", ["lru", "lrfu"])
def test_overflow_demotes_then_evicts_oldest(tmp_path: Path, policy: str) -> None:
    s = _store(tmp_path, policy=policy, promote_on_hit=False)
    for b in IDS[:6]:
        s.put(b, _data(b))
    assert [s.tier_of(b) for b in IDS[:6]] == ["ssd"] * 3 + ["memory"] * 3
    assert s.stats()["demotions"] == 3 and s.stats()["evictions"] == 0
    for b in IDS[6:8]:
        s.put(b, _data(b))
    # Two more demotions push the two oldest SSD blocks off the node.
    assert [s.tier_of(b) for b in IDS[:2]] == [None, None]
    assert {s.tier_of(b) for b in IDS[2:5]} == {"ssd"}
    assert s.stats()["evictions"] == 2
    for b in IDS[2:8]:
        assert s.read(b) == _data(b)
    _check_invariants(s, tmp_path)


def test_ssd_hits_and_handles(tmp_path: Path) -> None:
    s = _store(tmp_path, promote_on_hit=False)
    for b in IDS[:4]:
        s.put(b, _data(b))
    assert s.get_memory(IDS[0]) is None  # on SSD: no memory hit
    with s.open_ssd(IDS[0]) as h:
        h.file.seek(h.offset)
        assert h.file.read(h.length) == _data(IDS[0])
    assert s.tier_of(IDS[0]) == "ssd"  # open_ssd never promotes
    assert s.read(IDS[0]) == _data(IDS[0])
    assert s.tier_of(IDS[0]) == "ssd"  # promote_on_hit=False
    assert s.stats()["ssd_hits"] == 2
    assert s.open_ssd(IDS[5]) is None


def test_read_promotes_when_configured(tmp_path: Path) -> None:
    s = _store(tmp_path)
    for b in IDS[:4]:
        s.put(b, _data(b))
    assert s.read(IDS[0]) == _data(IDS[0])
    assert s.tier_of(IDS[0]) == "memory"
    assert s.tier_of(IDS[1]) == "ssd"  # demoted to make room
    assert s.stats()["promotions"] == 1


def test_promotion_keeps_the_ssd_copy_and_demotes_for_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _store(tmp_path, ssd_blocks=5)
    for b in IDS[:4]:
        s.put(b, _data(b))
    s.drain_changes()
    assert s.promote(IDS[0]) and s.tier_of(IDS[0]) == "memory"
    assert s.promote(IDS[0])  # already there
    assert sorted(s.block_ids()) == sorted(IDS[:4])  # counted once
    assert s.stats()["ssd_copies"] == 1
    assert s.drain_changes() == ([], [])  # a move is not a change
    writes: list[str] = []
    real = SsdTier.write_file

    def counting(t: SsdTier, b: str, d: bytes) -> None:
        writes.append(b)
        real(t, b, d)

    monkeypatch.setattr(SsdTier, "write_file", counting)
    # IDS[2], IDS[3], IDS[0] are in memory. Push IDS[0] out again, oldest first.
    s.get_memory(IDS[2])
    s.get_memory(IDS[3])
    s.put(IDS[4], _data(IDS[4]))
    assert s.tier_of(IDS[0]) == "ssd"
    assert IDS[0] not in writes  # its copy was still there
    assert s.read(IDS[0]) == _data(IDS[0])
    _check_invariants(s, tmp_path)


def test_redundant_copies_are_dropped_before_unique_blocks(tmp_path: Path) -> None:
    s = _store(tmp_path, mem_blocks=2, ssd_blocks=3)
    for b in IDS[:4]:
        s.put(b, _data(b))  # memory: 2, 3; ssd: 0, 1
    with s.open_ssd(IDS[0]):  # ssd, oldest first: 1, 0
        pass
    s.promote(IDS[0])  # demotes 2; memory: 3, 0; ssd: 1, 0 (a copy), 2
    assert s.stats()["ssd_copies"] == 1
    s.drain_changes()
    s.put(IDS[4], _data(IDS[4]))  # demotes 3; LRU alone would now evict 1
    assert [s.tier_of(b) for b in IDS[:5]] == ["memory", "ssd", "ssd", "ssd", "memory"]
    assert s.stats()["ssd_copy_drops"] == 1 and s.stats()["evictions"] == 0
    assert s.drain_changes() == ([IDS[4]], [])
    _check_invariants(s, tmp_path)


def test_promotion_into_a_full_ssd_gives_up_its_own_copy(tmp_path: Path) -> None:
    s = _store(tmp_path, mem_blocks=2, ssd_blocks=2)
    for b in IDS[:4]:
        s.put(b, _data(b))  # memory: 2, 3; ssd: 0, 1
    s.drain_changes()
    assert s.promote(IDS[0])  # demoting 2 needs a slot: 0's own copy, not block 1
    assert [s.tier_of(b) for b in IDS[:4]] == ["memory", "ssd", "ssd", "memory"]
    assert s.stats()["ssd_copies"] == 0 and s.stats()["evictions"] == 0
    assert s.drain_changes() == ([], [])
    _check_invariants(s, tmp_path)


def test_promote_misses(tmp_path: Path) -> None:
    s = _store(tmp_path, mem_blocks=1)
    assert not s.promote(IDS[0])
    s.put(IDS[0], b"x" * (2 * N))  # bigger than memory: SSD only, cannot be promoted
    assert s.tier_of(IDS[0]) == "ssd"
    assert not s.promote(IDS[0])
    assert s.read(IDS[0]) == b"x" * (2 * N)


def test_big_block_goes_straight_to_ssd(tmp_path: Path) -> None:
    s = _store(tmp_path, ssd_blocks=6)
    s.put(IDS[0], _data(IDS[0]))
    big = b"B" * (3 * N + 1)
    s.put(IDS[1], big)
    assert s.tier_of(IDS[1]) == "ssd" and s.tier_of(IDS[0]) == "memory"
    assert s.read(IDS[1]) == big
    assert s.drain_changes() == (sorted(IDS[:2]), [])


def test_block_larger_than_both_tiers(tmp_path: Path) -> None:
    s = _store(tmp_path)
    with pytest.raises(NoCapacity):
        s.put(IDS[0], b"x" * (3 * file_size(N)))
    assert s.block_ids() == [] and s.usage() == {"memory": 0, "ssd": 0}


def test_big_block_evicts_from_ssd(tmp_path: Path) -> None:
    s = _store(tmp_path, mem_blocks=1, ssd_blocks=3)
    for b in IDS[:4]:
        s.put(b, _data(b))  # ssd: 0, 1, 2; memory: 3
    s.put(IDS[5], b"x" * (2 * N))  # needs two SSD slots
    assert [s.tier_of(b) for b in IDS[:3]] == [None, None, "ssd"]
    _check_invariants(s, tmp_path)


# -- removal and changes ---------------------------------------------------------------------


def test_remove_from_both_tiers(tmp_path: Path) -> None:
    s = _store(tmp_path)
    for b in IDS[:5]:
        s.put(b, _data(b))
    s.promote(IDS[0])  # in both tiers
    s.drain_changes()
    assert s.remove([IDS[0], IDS[1], IDS[4], IDS[9], IDS[0]]) == 3
    assert [s.tier_of(b) for b in (IDS[0], IDS[1], IDS[4])] == [None] * 3
    assert s.drain_changes() == ([], sorted([IDS[0], IDS[1], IDS[4]]))
    assert s.stats()["removed"] == 3
    _check_invariants(s, tmp_path)


def test_drain_changes_is_net(tmp_path: Path) -> None:
    s = _store(tmp_path)
    s.put(IDS[0], _data(IDS[0]))
    s.put(IDS[1], _data(IDS[1]))
    s.remove([IDS[1]])  # added then removed: nothing to report
    assert s.drain_changes() == ([IDS[0]], [])
    assert s.drain_changes() == ([], [])
    s.remove([IDS[0]])
    s.put(IDS[0], _data(IDS[0]))  # removed then added back: the master's view holds
    assert s.drain_changes() == ([], [])
    s.remove([IDS[0]])
    assert s.drain_changes() == ([], [IDS[0]])


def test_changes_match_residency_under_random_ops(tmp_path: Path) -> None:
    """Replaying drained changes reproduces block_ids(), and budgets hold throughout."""
    rng = random.Random(5)
    s = _store(tmp_path, mem_blocks=4, ssd_blocks=6)
    known: set[str] = set()
    for step in range(400):
        b = rng.choice(IDS[:20])
        r = rng.random()
        if r < 0.5:
            s.put(b, _data(b, rng.choice([N // 2, N, 2 * N])))
        elif r < 0.7:
            s.promote(b)
        elif r < 0.8:
            s.remove([b])
        else:
            got = s.read(b)
            assert got is None or got[:16] == b.encode()[: len(got)]
        if step % 7 == 0:
            added, removed = s.drain_changes()
            assert not set(added) & set(removed)
            assert not set(added) & known and set(removed) <= known
            known = (known | set(added)) - set(removed)
            assert known == set(s.block_ids())
        _check_invariants(s, tmp_path)


# -- corruption and restart ----------------------------------------------------------------------


def _path(tmp_path: Path, b: str) -> Path:
    return tmp_path / "ssd" / b[:2] / b[2:4] / f"{b}.blk"


@pytest.mark.parametrize("reader", ["open_ssd", "read", "promote"])
def test_corrupt_ssd_block_is_dropped(tmp_path: Path, reader: str) -> None:
    s = _store(tmp_path)
    for b in IDS[:4]:
        s.put(b, _data(b))
    s.drain_changes()
    raw = bytearray(_path(tmp_path, IDS[0]).read_bytes())
    raw[-1] ^= 0xFF
    _path(tmp_path, IDS[0]).write_bytes(bytes(raw))
    assert getattr(s, reader)(IDS[0]) in (None, False)
    assert s.tier_of(IDS[0]) is None and not _path(tmp_path, IDS[0]).exists()
    assert s.stats()["corrupt_dropped"] == 1
    assert s.drain_changes() == ([], [IDS[0]])
    _check_invariants(s, tmp_path)


def test_vanished_ssd_file_is_dropped(tmp_path: Path) -> None:
    s = _store(tmp_path)
    for b in IDS[:4]:
        s.put(b, _data(b))
    os.unlink(_path(tmp_path, IDS[0]))
    assert s.open_ssd(IDS[0]) is None
    assert s.tier_of(IDS[0]) is None
    assert s.stats()["missing_dropped"] == 1 and s.stats()["corrupt_dropped"] == 0


def test_check_repairs(tmp_path: Path) -> None:
    s = _store(tmp_path)
    for b in IDS[:5]:
        s.put(b, _data(b))
    raw = bytearray(_path(tmp_path, IDS[1]).read_bytes())
    raw[-1] ^= 0xFF
    _path(tmp_path, IDS[1]).write_bytes(bytes(raw))
    assert s.check() == 1 and s.check() == 0
    assert s.tier_of(IDS[1]) is None and s.tier_of(IDS[0]) == "ssd"


def test_restart_keeps_ssd_blocks(tmp_path: Path) -> None:
    s = _store(tmp_path)
    for b in IDS[:5]:
        s.put(b, _data(b))
    s.close()
    with pytest.raises(InterfaceError):
        s.put(IDS[9], _data(IDS[9]))
    again = _store(tmp_path)
    assert sorted(again.block_ids()) == sorted(IDS[:2])  # memory blocks are gone
    assert again.drain_changes() == ([], [])
    assert again.read(IDS[1]) == _data(IDS[1])


def test_failed_demotion_write_evicts_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _store(tmp_path)
    for b in IDS[:3]:
        s.put(b, _data(b))

    def full(t: SsdTier, b: str, d: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SsdTier, "write_file", full)
    s.put(IDS[3], _data(IDS[3]))
    assert s.tier_of(IDS[3]) == "memory" and s.tier_of(IDS[0]) is None
    assert s.stats()["ssd_write_errors"] == 1 and s.stats()["evictions"] == 1
    _check_invariants(s, tmp_path)


def test_ssd_write_failures_are_logged_once_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    s = _store(tmp_path)
    for b in IDS[:3]:
        s.put(b, _data(b))
    real = SsdTier.write_file

    def full(t: SsdTier, b: str, d: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SsdTier, "write_file", full)
    with caplog.at_level("WARNING", logger="pipecache.tiering.store"):
        for b in IDS[3:7]:
            s.put(b, _data(b))
        assert s.stats()["ssd_write_errors"] == 4
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1, [r.getMessage() for r in caplog.records]
        assert "No space left on device" in errors[0].getMessage()
        assert str(tmp_path) in errors[0].getMessage()
        monkeypatch.setattr(SsdTier, "write_file", real)
        s.put(IDS[7], _data(IDS[7]))  # demotes one block: the disk works again
        s.put(IDS[8], _data(IDS[8]))
    assert [r.getMessage() for r in caplog.records][1:] == [
        f"SSD tier {tmp_path / 'ssd'}: writes work again after 4 failed"
    ]
    _check_invariants(s, tmp_path)


def test_failed_straight_to_ssd_write_is_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _store(tmp_path, mem_blocks=1)

    def full(t: SsdTier, b: str, d: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SsdTier, "write_file", full)
    with pytest.raises(NoCapacity, match="No space left"):
        s.put(IDS[0], _data(IDS[0], 2 * N))  # larger than memory: straight to SSD
    assert s.stats()["ssd_write_errors"] == 1 and s.block_ids() == []


@pytest.mark.parametrize(
    "kw",
    [
        {"memory_bytes": -1},
        {"memory_bytes": 1, "ssd_dir": "/tmp/x", "ssd_bytes": 0},
        {"memory_bytes": 1, "policy": "fifo"},
    ],
)
def test_config_validation(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        StoreConfig(**kw)


# -- concurrency -----------------------------------------------------------------------------------


def test_memory_hits_do_not_wait_for_disk_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _store(tmp_path)
    for b in IDS[:3]:
        s.put(b, _data(b))
    started, release = threading.Event(), threading.Event()
    real = SsdTier.write_file

    def slow(t: SsdTier, b: str, d: bytes) -> None:
        started.set()
        assert release.wait(10)
        real(t, b, d)

    monkeypatch.setattr(SsdTier, "write_file", slow)
    writer = threading.Thread(target=s.put, args=(IDS[3], _data(IDS[3])))
    writer.start()
    try:
        assert started.wait(10)
        # The victim is being written to SSD: still served from memory, meanwhile.
        view = s.get_memory(IDS[0])
        assert view is not None and bytes(view) == _data(IDS[0])
        assert s.tier_of(IDS[0]) == "memory" and s.tier_of(IDS[3]) is None
        assert s.usage()["memory"] <= 3 * N
        assert s.block_ids() and s.stats()["demotions"] == 0
    finally:
        release.set()
        writer.join(10)
    assert not writer.is_alive()
    assert s.tier_of(IDS[0]) == "ssd" and s.tier_of(IDS[3]) == "memory"


def test_threads_smoke(tmp_path: Path) -> None:
    s = _store(tmp_path, mem_blocks=6, ssd_blocks=10, policy="lrfu")
    errors: list[BaseException] = []
    done = threading.Event()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(300):
                b = rng.choice(IDS[:30])
                r = rng.random()
                if r < 0.4:
                    s.put(b, _data(b))
                elif r < 0.55:
                    v = s.get_memory(b)
                    assert v is None or bytes(v) == _data(b)
                elif r < 0.7:
                    h = s.open_ssd(b)
                    if h is not None:
                        with h:
                            h.file.seek(h.offset)
                            assert h.file.read(h.length) == _data(b)
                elif r < 0.8:
                    got = s.read(b)
                    assert got is None or got == _data(b)
                elif r < 0.9:
                    s.promote(b)
                else:
                    s.remove([b])
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    def watcher() -> None:
        while not done.is_set():
            use = s.usage()
            if use["memory"] > 6 * N or use["ssd"] > 10 * file_size(N):
                errors.append(AssertionError(f"over budget: {use}"))
            s.tier_of(IDS[0])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    w = threading.Thread(target=watcher)
    w.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done.set()
    w.join(10)
    assert not errors, errors[:3]
    _check_invariants(s, tmp_path)
    added, removed = s.drain_changes()
    assert set(added) == set(s.block_ids()) and removed == []
    for b in s.block_ids():  # without promoting anything, which would change the set
        view = s.get_memory(b)
        if view is not None:
            assert bytes(view) == _data(b)
            continue
        with s.open_ssd(b) as h:
            h.file.seek(h.offset)
            assert h.file.read(h.length) == _data(b)

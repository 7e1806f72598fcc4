"""Per-group quotas: the pure ledger, and the store evicting a group's own blocks."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pipecache.tiering.blocks import block_id
from pipecache.tiering.errors import NoCapacity
from pipecache.tiering.pins import PinSet
from pipecache.tiering.quotas import QuotaLedger
from pipecache.tiering.ssd import file_size
from pipecache.tiering.store import StoreConfig, TieredStore

N = 100
A = [block_id("m", "a", "e", i) for i in range(32)]
B = [block_id("m", "b", "e", i) for i in range(32)]


def _data(bid: str, n: int = N) -> bytes:
    return (bid.encode() * (n // 16 + 1))[:n]


def _store(tmp_path: Path | None, mem_blocks: int = 8, ssd_blocks: int = 8) -> TieredStore:
    return TieredStore(
        StoreConfig(
            memory_bytes=mem_blocks * N,
            ssd_dir=None if tmp_path is None else str(tmp_path / "ssd"),
            ssd_bytes=0 if tmp_path is None else ssd_blocks * file_size(N),
        )
    )


def _resident(s: TieredStore, ids: list[str]) -> list[str]:
    return [b for b in ids if s.tier_of(b) is not None]


# -- the ledger ---------------------------------------------------------------------


def test_ledger_offers_the_groups_own_blocks_in_lru_order() -> None:
    led = QuotaLedger("lru", PinSet())
    led.set_limits({"a": 3 * N})
    for b in A[:3]:
        led.charge(b, "a", N)
    led.charge(B[0], "b", N)
    led.access(A[0])  # A[1] is now the group's oldest
    assert led.victims("a", N) == [A[1]]
    assert led.victims("a", 2 * N) == [A[1], A[2]]
    assert led.victims("b", 10 * N) == []  # no limit
    assert led.victims("", 10 * N) == []  # uncharged
    assert led.victims("a", 4 * N) is None  # larger than the limit itself
    assert led.usage() == {"a": 3 * N, "b": N}


def test_ledger_never_offers_pinned_blocks() -> None:
    pins = PinSet()
    led = QuotaLedger("lru", pins)
    led.set_limits({"a": 2 * N})
    led.charge(A[0], "a", N)
    led.charge(A[1], "a", N)
    led.changed(pins.pin([A[0]]))
    assert led.victims("a", N) == [A[1]]
    led.changed(pins.pin([A[1]]))
    assert led.victims("a", N) is None
    led.changed(pins.unpin([A[0]]))
    assert led.victims("a", N) == [A[0]]


def test_ledger_uncharge_and_limits() -> None:
    led = QuotaLedger("lrfu", PinSet())
    led.charge(A[0], "", N)  # uncharged: not tracked
    assert led.group_of(A[0]) == "" and led.usage() == {}
    led.charge(A[1], "a", N)
    led.uncharge(A[1])
    led.uncharge(A[1])  # twice is harmless
    assert led.usage() == {}
    led.set_limits({"a": 5, "": 7})
    assert led.limits() == {"a": 5} and led.usage() == {"a": 0}
    with pytest.raises(ValueError):
        QuotaLedger("nope", PinSet())


# -- the store ------------------------------------------------------------------------


def test_over_quota_group_evicts_its_own_blocks_not_others(tmp_path: Path) -> None:
    s = _store(tmp_path)
    s.set_quotas({"a": 3 * N})
    for b in B[:4]:
        s.put(b, _data(b), "b")
    for b in A[:10]:
        s.put(b, _data(b), "a")
        assert s.quotas()["a"][0] <= 3 * N
    assert _resident(s, B[:4]) == B[:4]
    assert _resident(s, A[:10]) == A[7:10]  # the newest three
    assert s.quotas() == {"a": (3 * N, 3 * N), "b": (4 * N, None)}
    assert s.stats()["quota_evictions"] == 7
    assert s.group_of(B[0]) == "b" and s.group_of(A[0]) == ""


def test_quota_follows_the_policy_order(tmp_path: Path) -> None:
    s = _store(tmp_path)
    s.set_quotas({"a": 3 * N})
    for b in A[:3]:
        s.put(b, _data(b), "a")
    assert s.read(A[0]) is not None  # A[1] is now the group's oldest
    s.put(A[3], _data(A[3]), "a")
    assert _resident(s, A[:4]) == [A[0], A[2], A[3]]


def test_pinned_blocks_are_never_evicted_for_the_quota(tmp_path: Path) -> None:
    s = _store(tmp_path)
    s.set_quotas({"a": 2 * N})
    s.pin(A[:2])
    s.put(A[0], _data(A[0]), "a")
    s.put(A[1], _data(A[1]), "a")
    with pytest.raises(NoCapacity):
        s.put(A[2], _data(A[2]), "a")
    assert _resident(s, A[:3]) == A[:2]
    assert s.stats()["refused_quota"] == 1 and s.stats()["quota_evictions"] == 0
    s.unpin([A[0]])
    s.put(A[2], _data(A[2]), "a")
    assert _resident(s, A[:3]) == [A[1], A[2]]


def test_a_block_larger_than_the_quota_is_not_cached(tmp_path: Path) -> None:
    s = _store(tmp_path)
    s.set_quotas({"a": N // 2})
    with pytest.raises(NoCapacity):
        s.put(A[0], _data(A[0]), "a")
    assert s.tier_of(A[0]) is None and s.stats()["refused_quota"] == 1
    assert s.drain_changes() == ([], [])
    s.put(A[0], _data(A[0]), "b")  # another group, no limit: cached
    assert s.tier_of(A[0]) == "memory"


def test_demotion_and_promotion_keep_the_group(tmp_path: Path) -> None:
    s = _store(tmp_path, mem_blocks=2, ssd_blocks=8)
    s.set_quotas({"a": 4 * N})
    for b in A[:4]:
        s.put(b, _data(b), "a")  # A[0], A[1] demoted to SSD
    assert s.tier_of(A[0]) == "ssd"
    assert s.quotas()["a"] == (4 * N, 4 * N)  # counted once, across tiers
    assert s.read(A[0]) is not None and s.tier_of(A[0]) == "memory"  # promoted: two copies
    assert s.group_of(A[0]) == "a" and s.quotas()["a"][0] == 4 * N
    s.put(A[4], _data(A[4]), "a")  # over: the group's LRU block (A[1], on SSD) goes
    assert s.tier_of(A[1]) is None
    assert s.quotas()["a"][0] == 4 * N


def test_big_block_straight_to_ssd_is_charged_and_limited(tmp_path: Path) -> None:
    s = _store(tmp_path, mem_blocks=1, ssd_blocks=8)
    big = 2 * N
    s.set_quotas({"a": 3 * N})
    s.put(A[0], _data(A[0], big), "a")
    assert s.tier_of(A[0]) == "ssd" and s.quotas()["a"][0] == big
    s.put(A[1], _data(A[1], big), "a")  # 4N > 3N: A[0] goes
    assert s.tier_of(A[0]) is None and s.quotas()["a"][0] == big


def test_leaving_the_node_uncharges(tmp_path: Path) -> None:
    s = _store(tmp_path, mem_blocks=2, ssd_blocks=2)
    s.put(A[0], _data(A[0]), "a")
    s.remove([A[0]])
    assert s.quotas() == {}
    for b in A[:6]:  # node pressure evicts: the ledger follows
        s.put(b, _data(b), "a")
    assert s.quotas()["a"][0] == N * len(_resident(s, A[:6])) == 4 * N


def test_ssd_scan_blocks_are_uncharged(tmp_path: Path) -> None:
    s = _store(tmp_path, mem_blocks=1)
    s.put(A[0], _data(A[0]), "a")
    s.put(A[1], _data(A[1]), "a")  # A[0] demoted to SSD
    s.close()
    again = _store(tmp_path, mem_blocks=1)
    assert again.tier_of(A[0]) == "ssd"
    assert again.group_of(A[0]) == "" and again.quotas() == {}


def test_lowered_limit_applies_at_the_next_put(tmp_path: Path) -> None:
    s = _store(None)
    for b in A[:5]:
        s.put(b, _data(b), "a")
    s.set_quotas({"a": 2 * N})
    assert s.quotas()["a"] == (5 * N, 2 * N)
    s.put(A[5], _data(A[5]), "a")
    assert _resident(s, A[:6]) == [A[4], A[5]]


def test_random_ops_keep_usage_exact(tmp_path: Path) -> None:
    rng = random.Random(7)
    s = _store(tmp_path, mem_blocks=4, ssd_blocks=6)
    s.set_quotas({"a": 3 * N, "b": 5 * N})
    groups = {b: ("a" if i % 2 else "b") for i, b in enumerate(A + B)}
    for _ in range(800):
        b = rng.choice(A + B)
        op = rng.random()
        if op < 0.6:
            try:
                s.put(b, _data(b), groups[b])
            except NoCapacity:
                pass
        elif op < 0.8:
            s.read(b)
        elif op < 0.9:
            s.remove([b])
        else:
            (s.pin if rng.random() < 0.5 else s.unpin)([b])
        resident = [x for x in A + B if s.tier_of(x) is not None]
        for g, (used, limit) in s.quotas().items():
            mine = [x for x in resident if s.group_of(x) == g]
            assert used == N * len(mine)
            assert limit is None or used <= limit

"""Pins and releases: the pure policy wrapper, and the store honouring it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pipecache.tiering.blocks import block_id
from pipecache.tiering.errors import NoCapacity
from pipecache.tiering.eviction import LRFUPolicy, LRUPolicy
from pipecache.tiering.pins import PinAwarePolicy, PinSet
from pipecache.tiering.ssd import file_size
from pipecache.tiering.store import StoreConfig, TieredStore

N = 100
IDS = [block_id("m", "pins", "e", i) for i in range(64)]


def _data(bid: str, n: int = N) -> bytes:
    return (bid.encode() * (n // 16 + 1))[:n]


def _store(tmp_path: Path | None, mem_blocks: int = 3, ssd_blocks: int = 3) -> TieredStore:
    return TieredStore(
        StoreConfig(
            memory_bytes=mem_blocks * N,
            ssd_dir=None if tmp_path is None else str(tmp_path / "ssd"),
            ssd_bytes=0 if tmp_path is None else ssd_blocks * file_size(N),
        )
    )


# -- the policy wrapper ------------------------------------------------------------------


def _policy(n: int, movable: bool = False) -> tuple[PinAwarePolicy, PinSet]:
    pins = PinSet()
    pol = PinAwarePolicy(LRUPolicy(), pins, movable=movable)
    for b in IDS[:n]:
        pol.on_insert(b, 10)
    return pol, pins


def test_pinned_blocks_are_skipped_and_counted() -> None:
    pol, pins = _policy(4)
    pol.changed(pins.pin(IDS[:2]))
    assert pol.pinned_bytes == 20
    assert pol.victims(15) == IDS[2:4]
    assert pol.victims(100) == IDS[2:4]  # all it may offer
    pol.changed(pins.unpin([IDS[0]]))
    assert pol.pinned_bytes == 10
    assert pol.victims(25) == [IDS[2], IDS[3], IDS[0]]  # back among the ordinary, as just used


def test_movable_tier_offers_pinned_blocks_last() -> None:
    pol, pins = _policy(4, movable=True)
    pol.changed(pins.pin([IDS[0]]))
    assert pol.victims(35) == [IDS[1], IDS[2], IDS[3], IDS[0]]
    assert pol.victims(25) == [IDS[1], IDS[2], IDS[3]]


def test_released_blocks_go_first_least_recent_first() -> None:
    pol, pins = _policy(5)
    pol.changed(pins.pin(IDS[2:5]))
    ids = IDS[2:5]
    pol.changed(pins.unpin(ids))
    pol.changed(pins.release(ids))
    pol.on_access(IDS[2])  # most recent among the released now
    assert pol.victims(30) == [IDS[3], IDS[4], IDS[2]]
    assert pol.victims(40) == [IDS[3], IDS[4], IDS[2], IDS[0]]
    pol.on_remove(IDS[3])
    pins.left(IDS[3])
    pol.on_insert(IDS[3], 10)  # back on the node: an ordinary block again
    assert pol.victims(30) == [IDS[4], IDS[2], IDS[0]]


def test_pin_before_arrival_and_repin_clears_release() -> None:
    pol, pins = _policy(2)
    pol.changed(pins.pin([IDS[9]]))
    assert pol.pinned_bytes == 0
    pol.on_insert(IDS[9], 7)
    assert pol.pinned_bytes == 7 and IDS[9] not in pol.victims(1000)
    pol.changed(pins.release([IDS[0]]))
    pol.changed(pins.pin([IDS[0]]))
    assert pol.victims(1000) == [IDS[1]]


ops = st.lists(
    st.tuples(
        st.sampled_from(["insert", "access", "remove", "pin", "unpin", "release", "victims"]),
        st.integers(0, 11),
        st.integers(1, 50),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops, st.booleans(), st.booleans())
def test_property_pinned_never_victims_released_first(
    steps: list[tuple[str, int, int]], movable: bool, lrfu: bool
) -> None:
    pins = PinSet()
    pol = PinAwarePolicy(LRFUPolicy(0.5) if lrfu else LRUPolicy(), pins, movable=movable)
    sizes: dict[str, int] = {}
    for op, i, n in steps:
        b = IDS[i]
        if op == "insert":
            pol.on_insert(b, n)
            sizes[b] = n
        elif op == "access":
            pol.on_access(b)
        elif op == "remove":
            pol.on_remove(b)
            pins.left(b)
            sizes.pop(b, None)
        elif op == "pin":
            pol.changed(pins.pin([b]))
        elif op == "unpin":
            pol.changed(pins.unpin([b]))
        elif op == "release":
            pol.changed(pins.unpin([b]))
            pol.changed(pins.release([b]))
        assert pol.pinned_bytes == sum(s for k, s in sizes.items() if pins.is_pinned(k))
        victims = pol.victims(n * 3)
        assert len(victims) == len(set(victims)) and set(victims) <= set(sizes)
        pinned = [v for v in victims if pins.is_pinned(v)]
        if not movable:
            assert not pinned  # a pinned block is never a victim
        else:  # ... or only after every unpinned one
            assert victims[len(victims) - len(pinned) :] == pinned
        released = [v for v in victims if pins.is_released(v)]
        assert victims[: len(released)] == released  # released blocks go first
        resident_released = [k for k in sizes if pins.is_released(k)]
        if released or resident_released:
            # Every resident released block precedes any other victim.
            others = [v for v in victims if not pins.is_released(v)]
            assert not others or set(resident_released) <= set(released)
        freed = sum(sizes[v] for v in victims)
        offerable = sum(s for k, s in sizes.items() if movable or not pins.is_pinned(k))
        assert freed >= min(n * 3, offerable)  # enough, when the tier has it


# -- the store ---------------------------------------------------------------------------


def test_memory_only_store_keeps_pinned_and_refuses_when_full(tmp_path: Path) -> None:
    s = _store(None)
    for b in IDS[:3]:
        s.put(b, _data(b))
    assert s.pin(IDS[:2] + [IDS[40]]) == 3
    s.put(IDS[3], _data(IDS[3]))  # IDS[2] is the only unpinned block: it goes
    assert s.tier_of(IDS[2]) is None and s.tier_of(IDS[0]) == "memory"
    s.pin([IDS[3]])
    with pytest.raises(NoCapacity):
        s.put(IDS[4], _data(IDS[4]))
    assert sorted(s.block_ids()) == sorted(IDS[:2] + [IDS[3]])
    st_ = s.stats()
    assert st_["refused_pinned"] == 1 and st_["pinned_blocks"] == 3 and st_["pinned_ids"] == 4
    assert st_["pinned_memory_bytes"] == 3 * N
    s.unpin([IDS[0]])
    s.put(IDS[4], _data(IDS[4]))
    assert s.tier_of(IDS[0]) is None and s.tier_of(IDS[4]) == "memory"


def test_pin_before_arrival(tmp_path: Path) -> None:
    s = _store(None, mem_blocks=2)
    s.pin([IDS[0]])
    for b in IDS[:6]:
        s.put(b, _data(b))
    assert s.tier_of(IDS[0]) == "memory" and s.pinned() == sorted([IDS[0]])


def test_pinned_blocks_are_demoted_never_evicted(tmp_path: Path) -> None:
    s = _store(tmp_path, mem_blocks=2, ssd_blocks=3)
    s.pin(IDS[:3])
    for b in IDS[:12]:
        try:
            s.put(b, _data(b))
        except NoCapacity:
            pass
        for p in IDS[: min(3, IDS.index(b) + 1)]:
            assert s.tier_of(p) is not None, f"pinned {p} left the node"
    assert s.read(IDS[0]) == _data(IDS[0])
    assert s.usage()["memory"] <= 2 * N and s.usage()["ssd"] <= 3 * file_size(N)
    assert s.stats()["demotions"] >= 1


def test_full_of_pins_with_ssd_refuses_puts(tmp_path: Path) -> None:
    s = _store(tmp_path, mem_blocks=2, ssd_blocks=2)
    s.pin(IDS[:4])
    for b in IDS[:4]:
        s.put(b, _data(b))
    with pytest.raises(NoCapacity):
        s.put(IDS[5], _data(IDS[5]))
    assert sorted(s.block_ids()) == sorted(IDS[:4])
    s.release([IDS[2]])
    s.put(IDS[5], _data(IDS[5]))
    assert s.tier_of(IDS[2]) is None and s.tier_of(IDS[5]) is not None


def test_released_blocks_are_evicted_first(tmp_path: Path) -> None:
    s = _store(tmp_path, mem_blocks=3, ssd_blocks=3)
    for b in IDS[:6]:
        s.put(b, _data(b))  # IDS[:3] on SSD, IDS[3:6] in memory
    s.drain_changes()
    s.pin([IDS[4], IDS[1]])
    s.pin([IDS[50]])  # pinned ahead of an arrival that never came
    assert s.release([IDS[4], IDS[1], IDS[50]]) == 2  # IDS[50] is not resident, but unpinned
    s.put(IDS[6], _data(IDS[6]))
    assert s.tier_of(IDS[4]) is None  # evicted from memory, not demoted
    s.put(IDS[7], _data(IDS[7]))  # memory victim IDS[3] is demoted: SSD drops IDS[1] first
    assert s.tier_of(IDS[1]) is None and s.tier_of(IDS[0]) == "ssd"
    assert s.pinned() == []
    assert s.drain_changes() == (sorted(IDS[6:8]), sorted([IDS[1], IDS[4]]))


def test_promotion_never_moves_pinned_blocks(tmp_path: Path) -> None:
    s = _store(tmp_path, mem_blocks=2, ssd_blocks=4)
    for b in IDS[:4]:
        s.put(b, _data(b))  # IDS[2:4] in memory
    s.pin(IDS[2:4])
    assert s.read(IDS[0]) == _data(IDS[0])  # served from SSD, not promoted
    assert s.tier_of(IDS[0]) == "ssd" and s.tier_of(IDS[2]) == "memory"


def test_big_block_straight_to_ssd_respects_pins(tmp_path: Path) -> None:
    cfg = StoreConfig(memory_bytes=N, ssd_dir=str(tmp_path / "ssd"), ssd_bytes=2 * file_size(2 * N))
    s = TieredStore(cfg)
    s.put(IDS[0], _data(IDS[0], 2 * N))
    s.put(IDS[1], _data(IDS[1], 2 * N))
    s.pin(IDS[:2])
    with pytest.raises(NoCapacity):
        s.put(IDS[2], _data(IDS[2], 2 * N))
    assert sorted(s.block_ids()) == sorted(IDS[:2])
    s.unpin([IDS[0]])
    s.put(IDS[2], _data(IDS[2], 2 * N))
    assert s.tier_of(IDS[0]) is None and s.tier_of(IDS[1]) == "ssd"


def test_large_pin_commands_are_applied_in_chunks() -> None:
    s = _store(None)
    many = [f"{i:016x}" for i in range(3 * 4096 + 5)]
    s.put(many[-1], _data(many[-1]))
    assert s.pin(many + ["not-an-id"]) == len(many)
    assert len(s.pinned()) == len(many) and s.stats()["pinned_blocks"] == 1
    assert s.release(many) == 1  # only the resident one is marked
    assert s.pinned() == [] and s.stats()["pinned_blocks"] == 0

"""Eviction policies: ranking only, no I/O."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from pipecache.tiering.eviction import (
    EVICTION_POLICY,
    EvictionPolicy,
    LRFUPolicy,
    LRUPolicy,
    make_policy,
)

ALL: list[Callable[[], EvictionPolicy]] = [LRUPolicy, LRFUPolicy, lambda: LRFUPolicy(lam=0.5)]


@pytest.fixture(params=ALL, ids=["lru", "lrfu", "lrfu-0.5"])
def policy(request: pytest.FixtureRequest) -> EvictionPolicy:
    factory: Callable[[], EvictionPolicy] = request.param
    return factory()


# -- shared contract ----------------------------------------------------------------


def test_victims_free_enough_and_no_more_than_needed(policy: EvictionPolicy) -> None:
    sizes = {f"b{i}": 10 + i for i in range(10)}
    for b, s in sizes.items():
        policy.on_insert(b, s)
    for need in (1, 10, 11, 25, 60, 144):
        out = policy.victims(need)
        freed = sum(sizes[b] for b in out)
        assert freed >= need
        # Minimal prefix: without the last victim it would not be enough.
        assert freed - sizes[out[-1]] < need
        assert len(set(out)) == len(out)


def test_victims_never_mutate(policy: EvictionPolicy) -> None:
    for i in range(20):
        policy.on_insert(f"b{i}", 1)
    first = policy.victims(5)
    assert policy.victims(5) == first
    assert len(policy) == 20
    assert all(b in policy for b in first)


def test_victims_edge_amounts(policy: EvictionPolicy) -> None:
    assert policy.victims(100) == []
    policy.on_insert("a", 5)
    policy.on_insert("b", 5)
    assert policy.victims(0) == []
    assert policy.victims(-3) == []
    assert sorted(policy.victims(1000)) == ["a", "b"]  # not enough: everything


def test_remove_and_unknown_ids(policy: EvictionPolicy) -> None:
    policy.on_insert("a", 1)
    policy.on_insert("b", 1)
    policy.on_access("zzz")  # ignored
    policy.on_remove("zzz")  # ignored
    policy.on_remove("a")
    assert "a" not in policy and "b" in policy and len(policy) == 1
    assert policy.victims(10) == ["b"]


def test_reinsert_updates_size(policy: EvictionPolicy) -> None:
    policy.on_insert("a", 1)
    policy.on_insert("b", 1)
    policy.on_insert("a", 100)
    assert len(policy) == 2
    out = policy.victims(50)
    assert "a" in out  # b alone (1 byte) is not enough


def test_many_entries_stay_fast(policy: EvictionPolicy) -> None:
    """200k entries with churn; victims of a few blocks must not scan everything."""
    n = 200_000
    for i in range(n):
        policy.on_insert(f"{i:016x}", 4)
    for i in range(0, n, 7):
        policy.on_access(f"{i:016x}")
    for i in range(0, n, 11):
        policy.on_remove(f"{i:016x}")
    for _ in range(2000):
        out = policy.victims(16)
        assert len(out) == 4
        for b in out:
            policy.on_remove(b)


# -- LRU --------------------------------------------------------------------------------


def test_lru_order() -> None:
    p = LRUPolicy()
    for b in "abcd":
        p.on_insert(b, 1)
    p.on_access("a")
    assert p.victims(4) == ["b", "c", "d", "a"]
    p.on_insert("c", 1)  # re-insert counts as use
    assert p.victims(2) == ["b", "d"]


def test_lru_matches_a_reference_model() -> None:
    rng = random.Random(3)
    p, model = LRUPolicy(), list[str]()  # model: oldest first
    for _ in range(3000):
        b = f"b{rng.randrange(30)}"
        op = rng.random()
        if op < 0.4:
            p.on_insert(b, 1)
            if b in model:
                model.remove(b)
            model.append(b)
        elif op < 0.8:
            p.on_access(b)
            if b in model:
                model.remove(b)
                model.append(b)
        else:
            p.on_remove(b)
            if b in model:
                model.remove(b)
        assert p.victims(len(model)) == model


# -- LRFU ---------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lrfu_crf_follows_the_formula() -> None:
    clock = _Clock()
    p = LRFUPolicy(lam=0.5, clock=clock)
    p.on_insert("a", 1)  # t=0
    clock.now = 2.0
    p.on_access("a")  # CRF = 1 + 2**(-0.5*2) * 1 = 1.5
    assert p.crf("a", 2.0) == pytest.approx(1.5)
    assert p.crf("a", 4.0) == pytest.approx(1.5 * 0.5)
    assert p.crf("missing", 4.0) == 0.0


def test_lrfu_frequency_beats_recency_at_low_lambda() -> None:
    clock = _Clock()
    p = LRFUPolicy(lam=0.01, clock=clock)
    p.on_insert("hot", 1)
    for t in range(1, 6):
        clock.now = float(t)
        p.on_access("hot")  # five references
    clock.now = 10.0
    p.on_insert("new", 1)  # one recent reference
    assert p.victims(1) == ["new"]


def test_lrfu_recency_wins_at_high_lambda() -> None:
    clock = _Clock()
    p = LRFUPolicy(lam=1.0, clock=clock)
    p.on_insert("hot", 1)
    for t in range(1, 6):
        clock.now = float(t)
        p.on_access("hot")
    clock.now = 10.0
    p.on_insert("new", 1)
    assert p.victims(1) == ["hot"]


def test_lrfu_lambda_zero_is_lfu() -> None:
    p = LRFUPolicy(lam=0.0)
    counts = {"a": 3, "b": 1, "c": 5, "d": 2}
    for b in counts:
        p.on_insert(b, 1)
    for b, n in counts.items():
        for _ in range(n - 1):
            p.on_access(b)
    assert p.victims(4) == sorted(counts, key=counts.__getitem__)


def test_lrfu_ranks_by_crf_now_against_brute_force() -> None:
    """The heap order equals sorting by CRF at the current time."""
    clock = _Clock()
    rng = random.Random(11)
    p = LRFUPolicy(lam=0.05, clock=clock)
    live: set[str] = set()
    for step in range(2000):
        clock.now = float(step)
        b = f"b{rng.randrange(40)}"
        r = rng.random()
        if r < 0.3:
            p.on_insert(b, 1)
            live.add(b)
        elif r < 0.9:
            p.on_access(b)
        else:
            p.on_remove(b)
            live.discard(b)
    expected = sorted(live, key=lambda b: p.crf(b, clock.now))
    got = p.victims(len(live))
    assert [round(p.crf(b, clock.now), 9) for b in got] == [
        round(p.crf(b, clock.now), 9) for b in expected
    ]
    assert set(got) == live


def test_lrfu_heap_stays_bounded_under_churn() -> None:
    p = LRFUPolicy()
    for i in range(100):
        p.on_insert(f"b{i}", 1)
    for _ in range(50):
        for i in range(100):
            p.on_access(f"b{i}")
    assert len(p._heap) <= 2 * len(p) + 64


def test_lrfu_rejects_bad_lambda() -> None:
    with pytest.raises(ValueError):
        LRFUPolicy(lam=1.5)
    with pytest.raises(ValueError):
        LRFUPolicy(lam=-0.1)


# -- factory --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EVICTION_POLICY))
def test_make_policy_gives_fresh_instances(name: str) -> None:
    a, b = make_policy(name), make_policy(name)
    assert a is not b
    a.on_insert("x", 1)
    assert "x" not in b


def test_make_policy_types() -> None:
    assert isinstance(make_policy("lru"), LRUPolicy)
    assert isinstance(make_policy("lrfu"), LRFUPolicy)


def test_make_policy_unknown_name() -> None:
    with pytest.raises(ValueError, match="known: lrfu, lru"):
        make_policy("fifo")

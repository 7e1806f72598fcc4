"""Rendezvous placement: deterministic, weighted, minimal movement."""

from __future__ import annotations

import random

import pytest
from pipecache.tiering.blocks import block_id
from pipecache.tiering.placement import Candidate, owner, rank

BLOCKS = [block_id("m", f"k{i}", "e", 0) for i in range(6000)]


def _workers(n: int) -> list[Candidate]:
    return [Candidate(f"w{i}") for i in range(n)]


def test_owner_is_deterministic_and_order_independent() -> None:
    ws = _workers(5)
    shuffled = ws[:]
    random.Random(1).shuffle(shuffled)
    for b in BLOCKS[:500]:
        assert owner(b, ws) == owner(b, shuffled)
        assert rank(b, ws) == rank(b, shuffled)


def test_rank_lists_every_live_worker_once_owner_first() -> None:
    ws = [*_workers(4), Candidate("dead", 0.0)]
    for b in BLOCKS[:200]:
        r = rank(b, ws)
        assert sorted(r) == ["w0", "w1", "w2", "w3"]
        assert r[0] == owner(b, ws)


def test_no_live_worker() -> None:
    assert owner(BLOCKS[0], []) is None
    assert owner(BLOCKS[0], [Candidate("a", 0.0)]) is None
    assert rank(BLOCKS[0], [Candidate("a", 0.0)]) == []


def test_blocks_spread_evenly() -> None:
    counts = {w.worker_id: 0 for w in _workers(4)}
    for b in BLOCKS:
        counts[owner(b, _workers(4)) or ""] += 1
    for c in counts.values():
        assert abs(c - len(BLOCKS) / 4) < 0.1 * len(BLOCKS) / 4


@pytest.mark.parametrize("weights", [(1.0, 2.0), (1.0, 3.0, 4.0)])
def test_ownership_follows_weight(weights: tuple[float, ...]) -> None:
    ws = [Candidate(f"w{i}", w) for i, w in enumerate(weights)]
    counts = dict.fromkeys((w.worker_id for w in ws), 0)
    for b in BLOCKS:
        counts[owner(b, ws) or ""] += 1
    total = sum(weights)
    for w in ws:
        expected = len(BLOCKS) * w.weight / total
        assert abs(counts[w.worker_id] - expected) < 0.1 * expected, counts


def test_a_joining_worker_only_takes_blocks() -> None:
    """When a worker joins, a block either stays put or moves to the newcomer."""
    before, after = _workers(4), _workers(5)
    moved = 0
    for b in BLOCKS:
        old, new = owner(b, before), owner(b, after)
        if old != new:
            assert new == "w4"
            moved += 1
    assert abs(moved - len(BLOCKS) / 5) < 0.1 * len(BLOCKS) / 5


def test_a_leaving_worker_only_gives_its_blocks_away() -> None:
    before = _workers(5)
    after = [w for w in before if w.worker_id != "w2"]
    for b in BLOCKS[:2000]:
        old, new = owner(b, before), owner(b, after)
        assert old == new or old == "w2"
        if old == "w2":
            # The fallback order is stable: the next in rank takes over.
            assert new == rank(b, before)[1]

"""The memory tier: a budgeted dict of immutable payloads."""

from __future__ import annotations

import pytest
from pipecache.tiering.errors import NoCapacity
from pipecache.tiering.eviction import LRUPolicy
from pipecache.tiering.memory import MemoryTier


def _tier(capacity: int = 100) -> MemoryTier:
    return MemoryTier(capacity, LRUPolicy())


def test_put_get_pop_accounting() -> None:
    t = _tier()
    t.put("a", b"x" * 30)
    t.put("b", bytearray(b"y" * 20))
    assert (t.used, len(t), sorted(t.ids())) == (50, 2, ["a", "b"])
    view = t.get("b")
    assert view is not None and bytes(view) == b"y" * 20
    assert t.size_of("a") == 30 and t.size_of("zz") is None
    assert t.pop("a") == b"x" * 30
    assert t.pop("a") is None
    assert (t.used, "a" in t, "b" in t) == (20, False, True)
    assert t.get("a") is None


def test_stored_bytes_do_not_alias_the_callers_buffer() -> None:
    t = _tier()
    buf = bytearray(b"abc")
    t.put("a", buf)
    buf[0] = ord("z")
    assert t.peek("a") == b"abc"


def test_views_survive_pop_and_replace() -> None:
    t = _tier()
    t.put("a", b"old!")
    view = t.get("a")
    t.pop("a")
    t.put("a", b"new!")
    assert view is not None and bytes(view) == b"old!"


def test_replace_updates_used() -> None:
    t = _tier()
    t.put("a", b"x" * 10)
    t.put("a", b"x" * 70)
    assert t.used == 70 and len(t) == 1


def test_put_over_budget_raises_and_changes_nothing() -> None:
    t = _tier(100)
    t.put("a", b"x" * 60)
    with pytest.raises(NoCapacity):
        t.put("b", b"x" * 41)
    assert (t.used, "b" in t) == (60, False)
    t.put("b", b"x" * 40)  # exactly full is fine
    assert t.used == 100


def test_get_counts_an_access_peek_does_not() -> None:
    t = _tier()
    for b in "abc":
        t.put(b, b"x" * 10)
    t.peek("a")
    assert t.victims(10) == ["a"]
    t.get("a")
    assert t.victims(10) == ["b"]
    assert t.touch("b") and not t.touch("zz")
    assert t.victims(10) == ["c"]


def test_victims_by_bytes() -> None:
    t = _tier()
    for b, n in (("a", 10), ("b", 20), ("c", 30)):
        t.put(b, b"x" * n)
    assert t.victims(25) == ["a", "b"]
    assert t.victims(0) == []


def test_negative_capacity_rejected() -> None:
    with pytest.raises(ValueError):
        MemoryTier(-1, LRUPolicy())

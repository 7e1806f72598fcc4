"""ObjectCache: TTL expiry, size bound, invalidation."""

from __future__ import annotations

import pytest
from pipecache.client.protocol import ObjectInfo
from pipecache.master.metadata import ObjectCache


def info(key: str, bucket: str = "b", etag: str = "e1") -> ObjectInfo:
    return ObjectInfo(bucket, key, 10, etag, 0.0)


def test_get_put_and_ttl() -> None:
    c = ObjectCache(ttl=5.0, max_entries=10)
    assert c.get("b", "k", now=0.0) is None
    c.put(info("k"), now=0.0)
    assert c.get("b", "k", now=4.9) == info("k")
    assert c.get("b", "k", now=5.0) is None  # expired: dropped
    assert len(c) == 0


def test_restoring_refreshes_the_deadline_and_value() -> None:
    c = ObjectCache(ttl=5.0, max_entries=10)
    c.put(info("k"), now=0.0)
    c.put(info("k", etag="e2"), now=3.0)
    got = c.get("b", "k", now=7.0)
    assert got is not None and got.etag == "e2"


def test_size_bound_evicts_oldest() -> None:
    c = ObjectCache(ttl=100.0, max_entries=2)
    c.put(info("a"), now=0.0)
    c.put(info("b"), now=1.0)
    c.put(info("a"), now=2.0)  # re-stored: now the newest
    c.put(info("c"), now=3.0)
    assert len(c) == 2
    assert c.get("b", "b", now=3.0) is None
    assert c.get("b", "a", now=3.0) is not None and c.get("b", "c", now=3.0) is not None


def test_put_and_expire_drop_expired_entries_from_the_front() -> None:
    c = ObjectCache(ttl=1.0, max_entries=10)
    c.put(info("a"), now=0.0)
    c.put(info("b"), now=0.5)
    c.put(info("c"), now=1.2)  # "a" expired meanwhile
    assert len(c) == 2
    assert c.expire(now=1.6) == 1
    assert len(c) == 1


def test_invalidate() -> None:
    c = ObjectCache(ttl=10.0, max_entries=10)
    c.put(info("k"), now=0.0)
    assert c.invalidate("b", "k") is True
    assert c.invalidate("b", "k") is False
    assert c.get("b", "k", now=0.0) is None


def test_invalidate_prefix_is_per_bucket() -> None:
    c = ObjectCache(ttl=10.0, max_entries=10)
    for key in ("data/1", "data/2", "other"):
        c.put(info(key), now=0.0)
    c.put(info("data/1", bucket="b2"), now=0.0)
    assert c.invalidate_prefix("b", "data/") == 2
    assert c.get("b", "other", now=0.0) is not None
    assert c.get("b2", "data/1", now=0.0) is not None
    assert c.invalidate_prefix("b") == 1


@pytest.mark.parametrize(("ttl", "size"), [(0.0, 10), (10.0, 0)])
def test_zero_ttl_or_size_disables_caching(ttl: float, size: int) -> None:
    c = ObjectCache(ttl=ttl, max_entries=size)
    assert not c.enabled
    c.put(info("k"), now=0.0)
    assert c.get("b", "k", now=0.0) is None


def test_rejects_negative_settings() -> None:
    with pytest.raises(ValueError):
        ObjectCache(ttl=-1.0, max_entries=1)


def test_infinite_ttl_keeps_entries_until_evicted_or_invalidated() -> None:
    """The ``immutable`` consistency mode."""
    c = ObjectCache(float("inf"), 2)
    c.put(info("a"), now=0.0)
    assert c.get("b", "a", now=1e12) == info("a")
    assert c.expire(1e12) == 0
    c.put(info("x"), now=1.0)
    c.put(info("y"), now=2.0)
    assert c.get("b", "a", now=3.0) is None  # the size bound still applies
    assert c.invalidate("b", "x") and c.get("b", "x", now=3.0) is None

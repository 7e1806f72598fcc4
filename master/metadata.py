"""Object metadata cache: (bucket, key) -> ObjectInfo with a TTL and a size bound.

Pure: no clock, ``now`` is passed in. Entries sit in an OrderedDict in the order
they were (re)stored; with one TTL for all entries and a monotonic ``now`` that
is also the order they expire in, so both expiry and the size bound pop from
the front in O(1), and nothing has to be sorted or scanned on the hot path.
"""

from __future__ import annotations

from collections import OrderedDict

from ..client.protocol import ObjectInfo

_Key = tuple[str, str]


class ObjectCache:
    """Bounded TTL cache of object metadata (see the module docstring)."""

    def __init__(self, ttl: float, max_entries: int) -> None:
        if ttl < 0 or max_entries < 0:
            raise ValueError("ttl and max_entries must be >= 0")
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[_Key, tuple[float, ObjectInfo]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        """False when a zero TTL or size turns caching off."""
        return self.ttl > 0 and self.max_entries > 0

    def get(self, bucket: str, key: str, now: float) -> ObjectInfo | None:
        """The cached metadata, or None when absent or expired (then it is dropped)."""
        found = self.lookup(bucket, key, now)
        return None if found is None else found[0]

    def lookup(self, bucket: str, key: str, now: float) -> tuple[ObjectInfo, float] | None:
        """The cached metadata and the seconds it stays trusted, or None (as ``get``)."""
        item = self._entries.get((bucket, key))
        if item is None:
            return None
        deadline, info = item
        if now >= deadline:
            del self._entries[(bucket, key)]
            return None
        return info, deadline - now

    def put(self, info: ObjectInfo, now: float) -> None:
        """Store ``info`` until ``now + ttl``, evicting expired and then oldest entries."""
        if not self.enabled:
            return
        k = (info.bucket, info.key)
        self._entries.pop(k, None)  # re-stored: it moves to the back
        self._entries[k] = (now + self.ttl, info)
        self.expire(now)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def expire(self, now: float) -> int:
        """Drop the entries expired at ``now``; return how many."""
        entries, dropped = self._entries, 0
        while entries:
            k, (deadline, _) = next(iter(entries.items()))
            if now < deadline:
                break
            del entries[k]
            dropped += 1
        return dropped

    def invalidate(self, bucket: str, key: str) -> bool:
        """Forget one object; True if it was cached."""
        return self._entries.pop((bucket, key), None) is not None

    def invalidate_prefix(self, bucket: str, prefix: str = "") -> int:
        """Forget every object of ``bucket`` whose key starts with ``prefix``; return how many.

        A full scan: invalidation follows writes, which are rare next to reads,
        and an index per bucket would cost memory on every entry.
        """
        doomed = [k for k in self._entries if k[0] == bucket and k[1].startswith(prefix)]
        for k in doomed:
            del self._entries[k]
        return len(doomed)

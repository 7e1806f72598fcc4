"""Eviction policies as pure data structures.

A policy only *ranks* the blocks of one tier: the tier tells it about inserts,
accesses and removals, and asks it for ``victims(bytes_needed)``, the least
valuable blocks first. The policy never deletes anything; the caller applies
the answer (and then reports each removal through ``on_remove``). This keeps
the ranking testable without files or clocks, as diskcache keeps its policies
as data in ``EVICTION_POLICY``.

Both policies answer ``victims`` in time proportional to the number of victims
returned (not to the number of entries), so a tier of ~1M blocks stays cheap.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .blocks import BlockId


class EvictionPolicy(Protocol):
    """What a tier needs from a policy. Sizes are in bytes."""

    def on_insert(self, block_id: BlockId, size: int) -> None:
        """A block entered the tier (re-inserting updates its size and counts as an access)."""

    def on_access(self, block_id: BlockId) -> None:
        """A resident block was read (unknown ids are ignored)."""

    def on_remove(self, block_id: BlockId) -> None:
        """A block left the tier (unknown ids are ignored)."""

    def victims(self, bytes_needed: int) -> list[BlockId]:
        """Least valuable blocks first, just enough to free ``bytes_needed``.

        Returns every block when they do not add up to ``bytes_needed``, and
        nothing when ``bytes_needed <= 0``. Never removes anything.
        """

    def __contains__(self, block_id: object) -> bool: ...

    def __len__(self) -> int: ...


class LRUPolicy:
    """Least recently used: an OrderedDict from oldest to newest access."""

    def __init__(self) -> None:
        self._order: OrderedDict[BlockId, int] = OrderedDict()

    def on_insert(self, block_id: BlockId, size: int) -> None:
        self._order[block_id] = size
        self._order.move_to_end(block_id)

    def on_access(self, block_id: BlockId) -> None:
        if block_id in self._order:
            self._order.move_to_end(block_id)

    def on_remove(self, block_id: BlockId) -> None:
        self._order.pop(block_id, None)

    def victims(self, bytes_needed: int) -> list[BlockId]:
        out: list[BlockId] = []
        freed = 0
        # Iterating from the old end stops after the victims: O(len(result)).
        for block_id, size in self._order.items():
            if freed >= bytes_needed:
                break
            out.append(block_id)
            freed += size
        return out

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._order

    def __len__(self) -> int:
        return len(self._order)


@dataclass(slots=True)
class _Crf:
    crf: float
    """CRF value as of ``last`` (the decay since then is applied lazily)."""
    last: float
    """Time of the last reference."""
    size: int
    seq: int
    """Sequence number of this block's live heap entry; older entries are stale."""


class LRFUPolicy:
    """Least recently/frequently used (Lee et al., "LRFU", IEEE Trans. Computers 2001).

    Every reference at time ``t_i`` contributes ``F(t - t_i) = 2 ** (-lam * (t - t_i))``
    to a block's combined recency and frequency value::

        CRF(t) = sum_i F(t - t_i)

    which is updated in O(1) at each reference (``F(0) = 1``)::

        CRF(t_k) = 1 + F(t_k - t_{k-1}) * CRF(t_{k-1})

    ``lam`` = 0 makes it LFU (CRF counts references), ``lam`` = 1 makes it LRU;
    in between, a reference's weight halves every ``1 / lam`` ticks. The block
    with the smallest CRF *now* is evicted first.

    Ranking: all blocks decay by the same factor between two instants, so the
    order by ``CRF(now)`` equals the order by the time-free key
    ``log2(CRF(last)) + lam * last``. A key only changes when its block is
    referenced, so a min-heap keyed on it stays valid as time passes. A
    reference pushes a fresh entry and leaves the old one in the heap (lazy
    invalidation: an entry is live only if its ``seq`` is the block's current
    one); stale entries are dropped when ``victims`` meets them, and the heap is
    rebuilt when they outnumber the live ones. This gives O(log n) updates and
    O(k log n) ``victims`` for k victims, without a sorted container. The log
    form also never overflows, unlike ``CRF * 2 ** (lam * t)``.

    ``clock`` supplies the time; by default a logical counter ticks once per
    insert or access (the paper's "time = reference count"), which keeps the
    policy deterministic and free of wall-clock reads.
    """

    def __init__(self, lam: float = 1e-3, clock: Callable[[], float] | None = None) -> None:
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"LRFU lambda must be within [0, 1], got {lam}")
        self._lam = lam
        self._clock = clock
        self._tick = 0
        self._seq = itertools.count()
        self._entries: dict[BlockId, _Crf] = {}
        self._heap: list[tuple[float, int, BlockId]] = []

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        self._tick += 1
        return float(self._tick)

    def _decay(self, elapsed: float) -> float:
        """F(elapsed); a clock stepping back counts as no time passing."""
        return math.pow(2.0, -self._lam * max(0.0, elapsed))

    def _push(self, block_id: BlockId, e: _Crf) -> None:
        e.seq = next(self._seq)
        key = math.log2(e.crf) + self._lam * e.last
        heapq.heappush(self._heap, (key, e.seq, block_id))
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        # Rebuilding costs O(n) and happens after >= n stale entries piled up,
        # so it is amortised O(1) per update and bounds the heap to ~2n.
        if len(self._heap) <= 2 * len(self._entries) + 64:
            return
        live = {e.seq for e in self._entries.values()}
        self._heap = [item for item in self._heap if item[1] in live]
        heapq.heapify(self._heap)

    def crf(self, block_id: BlockId, now: float) -> float:
        """The block's CRF value at time ``now`` (0.0 when unknown)."""
        e = self._entries.get(block_id)
        if e is None:
            return 0.0
        return e.crf * self._decay(now - e.last)

    def on_insert(self, block_id: BlockId, size: int) -> None:
        e = self._entries.get(block_id)
        if e is not None:
            e.size = size
            self.on_access(block_id)
            return
        e = _Crf(crf=1.0, last=self._now(), size=size, seq=0)
        self._entries[block_id] = e
        self._push(block_id, e)

    def on_access(self, block_id: BlockId) -> None:
        e = self._entries.get(block_id)
        if e is None:
            return
        now = self._now()
        e.crf = 1.0 + e.crf * self._decay(now - e.last)
        e.last = now
        self._push(block_id, e)

    def on_remove(self, block_id: BlockId) -> None:
        # Its heap entry goes stale and is skipped later.
        if self._entries.pop(block_id, None) is not None:
            self._maybe_compact()

    def victims(self, bytes_needed: int) -> list[BlockId]:
        taken: list[tuple[float, int, BlockId]] = []
        freed = 0
        while freed < bytes_needed and self._heap:
            item = heapq.heappop(self._heap)
            e = self._entries.get(item[2])
            if e is None or e.seq != item[1]:
                continue  # stale: dropping it changes nothing observable
            taken.append(item)
            freed += e.size
        # Put the live entries back: the caller decides what actually leaves.
        for item in taken:
            heapq.heappush(self._heap, item)
        return [item[2] for item in taken]

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)


EVICTION_POLICY: dict[str, Callable[[], EvictionPolicy]] = {
    "lru": LRUPolicy,
    "lrfu": LRFUPolicy,
}
"""Policy names accepted in configuration, each with a factory for a fresh instance."""


def make_policy(name: str) -> EvictionPolicy:
    """A fresh policy for ``name`` (one of ``EVICTION_POLICY``); ValueError otherwise."""
    try:
        factory = EVICTION_POLICY[name]
    except KeyError:
        known = ", ".join(sorted(EVICTION_POLICY))
        raise ValueError(f"unknown eviction policy {name!r} (known: {known})") from None
    return factory()

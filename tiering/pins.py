"""Pins and releases: which blocks eviction must keep, and which it takes first.

The master decides what is held (a pipeline step will read it) and tells the
worker with pin, unpin and release commands; this module is the worker-side
bookkeeping, pure like the policies in ``eviction.py``.

* A **pinned** block never leaves the node for lack of room. It may still be
  demoted from memory to SSD (the SSD tier's wrapper never offers it; the
  memory tier's does, last, when there is an SSD to take it).
* A **released** block was pinned and is no longer needed: it is offered
  before any other block of its tier, least recently used first among the
  released ones. The mark lasts until the block leaves the node (or is
  pinned again).
* Ids are remembered whether or not the block is resident, so a pin sent
  before a load lands the block protects it from its first byte.

``PinAwarePolicy`` wraps any ``EvictionPolicy``: it keeps the inner policy's
ranking and only reorders and filters its ``victims``, so LRU and LRFU both
become pin-aware without knowing about pins.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from .blocks import BlockId
from .eviction import EvictionPolicy


class PinSet:
    """Pinned and released block ids, shared by every tier of one store."""

    def __init__(self) -> None:
        self._pinned: set[BlockId] = set()
        self._released: set[BlockId] = set()

    def pin(self, ids: Iterable[BlockId]) -> list[BlockId]:
        """Pin ``ids`` (resident or not); returns those that were not pinned before."""
        new = [b for b in dict.fromkeys(ids) if b not in self._pinned]
        self._pinned.update(new)
        self._released.difference_update(new)
        return new

    def unpin(self, ids: Iterable[BlockId]) -> list[BlockId]:
        """Unpin ``ids``; returns those that were pinned."""
        gone = [b for b in dict.fromkeys(ids) if b in self._pinned]
        self._pinned.difference_update(gone)
        return gone

    def release(self, ids: Iterable[BlockId]) -> list[BlockId]:
        """Unpin ``ids`` and mark them released; returns the newly released ones."""
        ids = list(dict.fromkeys(ids))
        self.unpin(ids)
        new = [b for b in ids if b not in self._released]
        self._released.update(new)
        return new

    def left(self, block_id: BlockId) -> None:
        """The block left the node: a later copy of it is an ordinary block again."""
        self._released.discard(block_id)

    def is_pinned(self, block_id: BlockId) -> bool:
        return block_id in self._pinned

    def is_released(self, block_id: BlockId) -> bool:
        return block_id in self._released

    def pinned(self) -> list[BlockId]:
        """Every pinned id, resident or not, sorted."""
        return sorted(self._pinned)

    def __len__(self) -> int:
        return len(self._pinned)


class PinAwarePolicy:
    """An ``EvictionPolicy`` that honours a ``PinSet`` (see the module docstring).

    ``movable``: pinned blocks may be offered as victims, after every other
    block, because the tier's owner moves its victims to a lower tier instead
    of dropping them (the memory tier of a store with an SSD). The owner must
    then never evict a pinned victim; it keeps it where it is if it cannot
    move it.

    The owner calls ``pinned``, ``unpinned`` and ``released`` after changing
    the ``PinSet``, so the pinned byte count stays exact.
    """

    def __init__(self, inner: EvictionPolicy, pins: PinSet, *, movable: bool = False) -> None:
        self._inner = inner
        self._pins = pins
        self._movable = movable
        self._sizes: dict[BlockId, int] = {}
        self._released: OrderedDict[BlockId, None] = OrderedDict()
        """Released resident blocks, least recently used first."""
        self.pinned_bytes = 0
        """Bytes of this tier held by pinned blocks."""

    # -- membership (EvictionPolicy) ---------------------------------------------

    def on_insert(self, block_id: BlockId, size: int) -> None:
        old = self._sizes.get(block_id)
        if self._pins.is_pinned(block_id):
            self.pinned_bytes += size - (old or 0)
        self._sizes[block_id] = size
        self._inner.on_insert(block_id, size)
        if self._pins.is_released(block_id):
            self._released[block_id] = None
            self._released.move_to_end(block_id)

    def on_access(self, block_id: BlockId) -> None:
        self._inner.on_access(block_id)
        if block_id in self._released:
            self._released.move_to_end(block_id)

    def on_remove(self, block_id: BlockId) -> None:
        size = self._sizes.pop(block_id, None)
        if size is not None and self._pins.is_pinned(block_id):
            self.pinned_bytes -= size
        self._released.pop(block_id, None)
        self._inner.on_remove(block_id)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._sizes

    def __len__(self) -> int:
        return len(self._sizes)

    # -- pin changes ------------------------------------------------------------------

    def pinned(self, ids: Iterable[BlockId]) -> None:
        """``ids`` were just pinned (each one newly)."""
        for b in ids:
            size = self._sizes.get(b)
            if size is not None:
                self.pinned_bytes += size
                self._released.pop(b, None)

    def unpinned(self, ids: Iterable[BlockId]) -> None:
        """``ids`` were just unpinned (each one was pinned)."""
        for b in ids:
            self.pinned_bytes -= self._sizes.get(b, 0)

    def released(self, ids: Iterable[BlockId]) -> None:
        """``ids`` were just released: resident ones become the first candidates."""
        for b in ids:
            if b in self._sizes:
                self._released[b] = None

    def pinned_count(self) -> int:
        """Resident pinned blocks of this tier (walks the pinned ids)."""
        return sum(1 for b in self._pins.pinned() if b in self._sizes)

    # -- the ranking ------------------------------------------------------------------

    def victims(self, bytes_needed: int) -> list[BlockId]:
        """Released blocks, then unpinned ones in the inner order, then (``movable``) pinned ones.

        Just enough to free ``bytes_needed``; fewer (all it may offer) when
        the tier cannot free that much.
        """
        out: list[BlockId] = []
        freed = 0
        for b in self._released:
            if freed >= bytes_needed:
                return out
            out.append(b)
            freed += self._sizes[b]
        if freed >= bytes_needed:
            return out
        # Asking for the rest plus every byte that will be skipped guarantees
        # enough unpinned candidates, unless the tier has none left at all.
        skipped = self.pinned_bytes + freed
        later: list[BlockId] = []
        for b in self._inner.victims(bytes_needed - freed + skipped):
            if freed >= bytes_needed:
                break
            if b in self._released:
                continue
            if self._pins.is_pinned(b):
                later.append(b)
                continue
            out.append(b)
            freed += self._sizes[b]
        if self._movable:
            for b in later:
                if freed >= bytes_needed:
                    break
                out.append(b)
                freed += self._sizes[b]
        return out

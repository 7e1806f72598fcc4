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

``PinAwarePolicy`` wraps any ``EvictionPolicy``: the inner policy ranks the
ordinary blocks, and the wrapper puts released ones before them and pinned
ones out of reach, so LRU and LRFU both become pin-aware without knowing
about pins.
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

    The inner policy ranks only the *ordinary* blocks: pinned and released
    blocks are taken out of it and kept in their own recency lists, so
    ``victims`` costs O(victims) however many blocks are pinned (asking the
    inner policy to skip them would walk every pinned block on each call). A
    block that becomes ordinary again re-enters the inner policy as if just
    used.

    ``movable``: pinned blocks may be offered as victims, after every other
    block, because the tier's owner moves its victims to a lower tier instead
    of dropping them (the memory tier of a store with an SSD). The owner must
    then never evict a pinned victim; it keeps it where it is if it cannot
    move it.

    The owner calls ``changed`` with the ids whose pin state it just changed.
    """

    def __init__(self, inner: EvictionPolicy, pins: PinSet, *, movable: bool = False) -> None:
        self._inner = inner
        self._pins = pins
        self._movable = movable
        self._sizes: dict[BlockId, int] = {}
        self._pinned: OrderedDict[BlockId, None] = OrderedDict()
        """Pinned resident blocks, least recently used first."""
        self._released: OrderedDict[BlockId, None] = OrderedDict()
        """Released resident blocks, least recently used first."""
        self.pinned_bytes = 0
        """Bytes of this tier held by pinned blocks."""

    # -- membership (EvictionPolicy) ---------------------------------------------

    def on_insert(self, block_id: BlockId, size: int) -> None:
        if block_id in self._sizes:
            self._detach(block_id)
        self._sizes[block_id] = size
        self._attach(block_id)

    def on_access(self, block_id: BlockId) -> None:
        if block_id in self._pinned:
            self._pinned.move_to_end(block_id)
        elif block_id in self._released:
            self._released.move_to_end(block_id)
        else:
            self._inner.on_access(block_id)

    def on_remove(self, block_id: BlockId) -> None:
        if block_id in self._sizes:
            self._detach(block_id)
            del self._sizes[block_id]

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._sizes

    def __len__(self) -> int:
        return len(self._sizes)

    # -- pin changes ------------------------------------------------------------------

    def changed(self, ids: Iterable[BlockId]) -> None:
        """The ``PinSet`` state of ``ids`` just changed: move resident ones to their new list."""
        for b in ids:
            if b in self._sizes and self._kind(b) != self._list_of(b):
                self._detach(b)
                self._attach(b)

    def pinned_ids(self) -> list[BlockId]:
        """The pinned blocks of this tier."""
        return list(self._pinned)

    # -- the ranking ------------------------------------------------------------------

    def victims(self, bytes_needed: int) -> list[BlockId]:
        """Released blocks, then ordinary ones in the inner order, then (``movable``) pinned ones.

        Just enough to free ``bytes_needed``; fewer (all it may offer) when
        the tier cannot free that much.
        """
        out: list[BlockId] = []
        freed = self._take(self._released, bytes_needed, out)
        if freed < bytes_needed:
            for b in self._inner.victims(bytes_needed - freed):
                out.append(b)
                freed += self._sizes[b]
        if freed < bytes_needed and self._movable:
            self._take(self._pinned, bytes_needed - freed, out)
        return out

    # -- internals --------------------------------------------------------------------

    def _take(self, ordered: OrderedDict[BlockId, None], bytes_needed: int, out: list[BlockId]) -> int:
        freed = 0
        for b in ordered:
            if freed >= bytes_needed:
                break
            out.append(b)
            freed += self._sizes[b]
        return freed

    def _kind(self, block_id: BlockId) -> str:
        """Which list the ``PinSet`` says the block belongs in."""
        if self._pins.is_pinned(block_id):
            return "pinned"
        return "released" if self._pins.is_released(block_id) else "ordinary"

    def _list_of(self, block_id: BlockId) -> str:
        """Which list the block is in now."""
        if block_id in self._pinned:
            return "pinned"
        return "released" if block_id in self._released else "ordinary"

    def _attach(self, block_id: BlockId) -> None:
        kind, size = self._kind(block_id), self._sizes[block_id]
        if kind == "pinned":
            self._pinned[block_id] = None
            self.pinned_bytes += size
        elif kind == "released":
            self._released[block_id] = None
        else:
            self._inner.on_insert(block_id, size)

    def _detach(self, block_id: BlockId) -> None:
        if block_id in self._pinned:
            del self._pinned[block_id]
            self.pinned_bytes -= self._sizes[block_id]
        elif block_id in self._released:
            del self._released[block_id]
        else:
            self._inner.on_remove(block_id)

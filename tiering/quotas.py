"""Per-group cache quotas on one node: who was charged for which block, and what must go.

A *group* is a tenant name. A block is charged to the group whose request
brought it into the cache (the first toucher, as Linux memcg charges a page
to the cgroup that first faulted it); later readers of another group share
it for free. The empty group "" is uncharged: admin loads, preloads,
anonymous reads and blocks found on SSD at startup (their group is not
recorded on disk). Uncharged blocks are not tracked here at all.

A group's use counts each of its blocks once, by payload length, whether it
sits in memory, on SSD or both: a block keeps its group across promotion and
demotion because this ledger is keyed by block id and only forgets a block
when it leaves the node.

When a block of group g arrives and g would go over its limit, ``victims``
names g's own blocks to drop first, in the eviction policy's order (released
blocks first, pinned ones never), or None when even that cannot make room:
the caller then serves the bytes without caching them. Other groups' blocks
are never offered. A group without a limit is tracked (for reporting) but
never constrained. A lowered limit takes effect at the group's next insert.

Pure and not thread-safe: ``TieredStore`` guards it with its lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .blocks import BlockId
from .eviction import make_policy
from .pins import PinAwarePolicy, PinSet

UNCHARGED = ""
"""The group of blocks nobody is charged for."""


class QuotaLedger:
    """Bytes per group on this node, each group's blocks ranked for eviction, and the limits."""

    def __init__(self, policy: str, pins: PinSet) -> None:
        make_policy(policy)  # ValueError for an unknown name, now rather than at the first charge
        self._policy = policy
        self._pins = pins
        self._group: dict[BlockId, str] = {}
        self._size: dict[BlockId, int] = {}
        self._order: dict[str, PinAwarePolicy] = {}
        self._used: dict[str, int] = {}
        self._limits: dict[str, int] = {}

    # -- limits ---------------------------------------------------------------------

    def set_limits(self, limits: Mapping[str, int]) -> None:
        """Replace every limit (bytes per group; a group not named has none)."""
        self._limits = {g: max(0, int(n)) for g, n in limits.items() if g != UNCHARGED}

    def limits(self) -> dict[str, int]:
        return dict(self._limits)

    def usage(self) -> dict[str, int]:
        """Bytes charged per group (groups with blocks here, or with a limit)."""
        out = dict.fromkeys(self._limits, 0)
        out.update(self._used)
        return out

    def group_of(self, block_id: BlockId) -> str:
        return self._group.get(block_id, UNCHARGED)

    # -- the decision ---------------------------------------------------------------

    def victims(self, group: str, size: int) -> list[BlockId] | None:
        """The group's blocks to drop so ``size`` more bytes fit its limit; None if they cannot.

        [] when nothing needs to go (uncharged, no limit, or room left).
        """
        limit = self._limits.get(group)
        if group == UNCHARGED or limit is None:
            return []
        need = self._used.get(group, 0) + size - limit
        if need <= 0:
            return []
        if size > limit:
            return None
        order = self._order.get(group)
        out = [] if order is None else order.victims(need)
        if sum(self._size[b] for b in out) < need:
            return None  # the rest of the group's blocks are pinned
        return out

    # -- membership -------------------------------------------------------------------

    def charge(self, block_id: BlockId, group: str, size: int) -> None:
        """A block of ``group`` entered the node (no-op for the uncharged group)."""
        if group == UNCHARGED:
            return
        self.uncharge(block_id)
        order = self._order.get(group)
        if order is None:
            order = self._order[group] = PinAwarePolicy(make_policy(self._policy), self._pins)
        order.on_insert(block_id, size)
        self._group[block_id] = group
        self._size[block_id] = size
        self._used[group] = self._used.get(group, 0) + size

    def uncharge(self, block_id: BlockId) -> None:
        """The block left the node (unknown ids are ignored)."""
        group = self._group.pop(block_id, None)
        if group is None:
            return
        size = self._size.pop(block_id)
        self._order[group].on_remove(block_id)
        left = self._used[group] - size
        if left:
            self._used[group] = left
        else:  # forget empty groups: tenants come and go
            del self._used[group]
            del self._order[group]

    def access(self, block_id: BlockId) -> None:
        group = self._group.get(block_id)
        if group is not None:
            self._order[group].on_access(block_id)

    def changed(self, ids: Iterable[BlockId]) -> None:
        """The pin state of ``ids`` changed (see ``PinAwarePolicy.changed``)."""
        for b in ids:
            group = self._group.get(b)
            if group is not None:
                self._order[group].changed([b])

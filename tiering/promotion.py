"""When an SSD hit is worth copying into memory: only when the block comes back soon.

Promoting every SSD hit turns a scan larger than memory into churn: each
promoted block pushes out another before anyone reads it again, and the
copies cost more than the reads they serve (measured: a third of a worker's
time on a 256 MiB object with 16 MiB of memory). So, as 2Q and ARC do with
their ghost lists, a block is promoted on its *second* SSD hit, and only if
its reuse distance fits in memory: fewer bytes were read in between, from
any tier, than memory holds, so that it would still be in memory at its next
read. Every read counts, memory hits included: they are what keeps memory's
blocks in place, and counting only SSD hits let an epoch over twice memory
promote (and demote) blocks on every pass.
"""

from __future__ import annotations

from collections import OrderedDict


class PromotionFilter:
    """A byte clock of every read, and the clock at each recent SSD hit (ids only)."""

    def __init__(self, budget: int) -> None:
        if budget < 0:
            raise ValueError("budget must be >= 0")
        self.budget = budget
        self._clock = 0
        # Block id -> the clock when its last SSD hit began, oldest first.
        self._seen: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def read(self, nbytes: int) -> None:
        """Count a read of ``nbytes`` from any tier (SSD hits included, before ``hit``)."""
        seen = self._seen
        while seen:  # forget hits that even a read starting now would find out of reach
            _, stamp = next(iter(seen.items()))
            if self._clock - stamp <= self.budget:
                break
            seen.popitem(last=False)
        self._clock += nbytes

    def hit(self, block_id: str, nbytes: int) -> bool:
        """An SSD hit of ``nbytes`` (already counted by ``read``): True to promote it now."""
        stamp = self._seen.pop(block_id, None)
        if nbytes > self.budget:
            return False
        began = self._clock - nbytes
        # The block and everything read since it was last read fit in memory.
        if stamp is not None and began - stamp <= self.budget:
            return True  # forgotten: the next SSD hit, if any, starts over
        self._seen[block_id] = began
        return False

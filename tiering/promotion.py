"""When an SSD hit is worth copying into memory: only when the block comes back soon.

Promoting every SSD hit turns a scan larger than memory into churn: each
promoted block pushes out another before anyone reads it again, and the
copies cost more than the reads they serve (measured: a third of a worker's
time on a 256 MiB object with 16 MiB of memory). So, as 2Q and ARC do with
their ghost lists, a block is promoted on its *second* SSD hit, and only if
fewer bytes of other SSD hits came in between than memory holds: then it
would still be in memory at its next read.
"""

from __future__ import annotations

from collections import OrderedDict


class PromotionFilter:
    """Remembers recent SSD hits (ids only) up to ``budget`` bytes of their blocks."""

    def __init__(self, budget: int) -> None:
        if budget < 0:
            raise ValueError("budget must be >= 0")
        self.budget = budget
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._seen)

    def hit(self, block_id: str, nbytes: int) -> bool:
        """Record an SSD hit of ``nbytes``; True when the block should be promoted now."""
        size = self._seen.pop(block_id, None)
        if size is not None:
            self._bytes -= size
            return True
        if nbytes > self.budget:
            return False
        self._seen[block_id] = nbytes
        self._bytes += nbytes
        while self._bytes > self.budget:
            _, old = self._seen.popitem(last=False)
            self._bytes -= old
        return False

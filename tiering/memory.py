"""The memory tier: block payloads held as immutable ``bytes``.

Blocks are stored as ``bytes`` so that a ``memoryview`` handed to a reader
stays valid (and unchanged) even after the block is popped or replaced: the
view keeps its bytes object alive. The tier enforces its budget on ``put`` but
never evicts by itself; the owner asks ``victims`` and pops them first.

Not thread-safe: the owner (``TieredStore``) guards it with its lock.
"""

from __future__ import annotations

from .blocks import BlockId
from .errors import NoCapacity
from .eviction import EvictionPolicy


class MemoryTier:
    """A byte-budgeted dict of block id -> payload, ranked by an eviction policy."""

    def __init__(self, capacity_bytes: int, policy: EvictionPolicy) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity_bytes}")
        self._capacity = capacity_bytes
        self._policy = policy
        self._blocks: dict[BlockId, bytes] = {}
        self._used = 0

    @property
    def capacity(self) -> int:
        """Budget in payload bytes."""
        return self._capacity

    @property
    def used(self) -> int:
        """Payload bytes currently held."""
        return self._used

    def get(self, block_id: BlockId) -> memoryview | None:
        """A read-only view of the block, counting an access; None when absent."""
        data = self._blocks.get(block_id)
        if data is None:
            return None
        self._policy.on_access(block_id)
        return memoryview(data)

    def peek(self, block_id: BlockId) -> bytes | None:
        """The block's bytes without counting an access (for demotion and reports)."""
        return self._blocks.get(block_id)

    def touch(self, block_id: BlockId) -> bool:
        """Count an access; False when the block is absent."""
        if block_id not in self._blocks:
            return False
        self._policy.on_access(block_id)
        return True

    def size_of(self, block_id: BlockId) -> int | None:
        """Payload length of a resident block, None when absent."""
        data = self._blocks.get(block_id)
        return None if data is None else len(data)

    def put(self, block_id: BlockId, data: bytes) -> None:
        """Store (or replace) a block; NoCapacity if it would exceed the budget.

        Make room first with ``victims`` and ``pop``: the tier never evicts on
        its own, so the owner can demote victims instead of losing them.
        """
        data = bytes(data)  # no copy for bytes; freezes a bytearray/memoryview
        old = self._blocks.get(block_id)
        used = self._used - (0 if old is None else len(old)) + len(data)
        if used > self._capacity:
            raise NoCapacity(
                f"block {block_id} ({len(data)} bytes) does not fit in memory "
                f"({self._used}/{self._capacity} bytes used)"
            )
        self._blocks[block_id] = data
        self._used = used
        self._policy.on_insert(block_id, len(data))

    def pop(self, block_id: BlockId) -> bytes | None:
        """Remove a block and return its bytes (None when absent)."""
        data = self._blocks.pop(block_id, None)
        if data is not None:
            self._used -= len(data)
            self._policy.on_remove(block_id)
        return data

    def victims(self, bytes_needed: int) -> list[BlockId]:
        """Blocks to pop, least valuable first, to free ``bytes_needed`` (see EvictionPolicy)."""
        return self._policy.victims(bytes_needed)

    def ids(self) -> list[BlockId]:
        """Every resident block id."""
        return list(self._blocks)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._blocks

    def __len__(self) -> int:
        return len(self._blocks)

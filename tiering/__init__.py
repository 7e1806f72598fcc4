"""The pure block-store library under the worker: block math, tiers, policies.

No network code lives here (enforced by import-linter).
"""

from .blocks import (
    DEFAULT_BLOCK_SIZE,
    BlockId,
    BlockSpan,
    block_count,
    block_extent,
    block_id,
    spans,
)
from .budget import default_memory_bytes, default_ssd_bytes, parse_size
from .errors import CacheError
from .eviction import EVICTION_POLICY, EvictionPolicy, LRFUPolicy, LRUPolicy, make_policy
from .memory import MemoryTier
from .pins import PinAwarePolicy, PinSet
from .placement import Candidate, owner, rank
from .ssd import SsdHandle, SsdTier
from .store import StoreConfig, TieredStore

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "BlockId",
    "BlockSpan",
    "CacheError",
    "Candidate",
    "block_count",
    "block_extent",
    "block_id",
    "owner",
    "rank",
    "spans",
    "EVICTION_POLICY",
    "EvictionPolicy",
    "LRFUPolicy",
    "LRUPolicy",
    "MemoryTier",
    "PinAwarePolicy",
    "PinSet",
    "SsdHandle",
    "SsdTier",
    "StoreConfig",
    "TieredStore",
    "default_memory_bytes",
    "default_ssd_bytes",
    "make_policy",
    "parse_size",
]

"""The pure block-store library under the worker: block math, tiers, policies.

No network code lives here (enforced by import-linter).
"""

from .blocks import DEFAULT_BLOCK_SIZE, BlockId, BlockSpan, block_count, block_extent, block_id, spans
from .errors import CacheError
from .placement import Candidate, owner, rank

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
]

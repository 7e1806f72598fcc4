"""Rendezvous (highest-random-weight) placement of blocks on workers.

Every side computes the same owner for a block from the same worker list, so a
client goes straight to the owning worker without asking the master. Weights
follow capacity: a worker with twice the capacity owns about twice the blocks
(weighted rendezvous hashing, score = -w / ln(h), h uniform in (0, 1)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import xxhash

_TWO64 = float(1 << 64)


@dataclass(frozen=True, slots=True)
class Candidate:
    worker_id: str
    weight: float = 1.0


def _score(block: str, cand: Candidate) -> float:
    h = xxhash.xxh3_64_intdigest(f"{cand.worker_id}\x00{block}".encode())
    u = (h + 0.5) / _TWO64  # in (0, 1), never 0 or 1
    return -cand.weight / math.log(u)


def rank(block: str, candidates: Sequence[Candidate]) -> list[str]:
    """Worker ids ordered from owner to last fallback for ``block``."""
    live = [c for c in candidates if c.weight > 0]
    live.sort(key=lambda c: (_score(block, c), c.worker_id), reverse=True)
    return [c.worker_id for c in live]


def owner(block: str, candidates: Sequence[Candidate]) -> str | None:
    """The worker that owns ``block``, or None when there is no live worker."""
    best: tuple[float, str] | None = None
    for c in candidates:
        if c.weight <= 0:
            continue
        s = (_score(block, c), c.worker_id)
        if best is None or s > best:
            best = s
    return None if best is None else best[1]

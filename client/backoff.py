"""Capped, jittered exponential backoff, shared by every retry loop that talks to a peer."""

from __future__ import annotations

import random
from collections.abc import Callable

BACKOFF_BASE = 0.1
"""Seconds before the first retry."""


def backoff(attempt: int, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): 0.1 s doubling up to ``cap``,
    jittered down by up to half so a fleet of processes does not retry in lockstep."""
    delay = min(cap, BACKOFF_BASE * 2.0 ** min(attempt, 30))
    return delay * (0.5 + 0.5 * rand())

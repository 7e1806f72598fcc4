"""Consistency modes of the under-store mount: how long object metadata is trusted. Pure.

- ``immutable``: objects never change in place; metadata is cached until evicted.
- ``ttl=SECONDS``: metadata is trusted for SECONDS, then the under-store is asked again.
- ``always``: every open asks the under-store for the current ETag (a HEAD);
  unchanged objects are still served from cached blocks.

Whatever the mode, bytes are never stale: a block's id includes the object's
ETag, and workers read misses with the ETag as a precondition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

DEFAULT_TTL = 60.0

Mode = Literal["immutable", "ttl", "always"]


@dataclass(frozen=True, slots=True)
class Consistency:
    mode: Mode = "ttl"
    ttl: float = DEFAULT_TTL
    """Seconds metadata is trusted in ``ttl`` mode."""

    @property
    def metadata_ttl(self) -> float:
        """Seconds a metadata cache may keep an entry: inf, the TTL, or 0 (never)."""
        if self.mode == "immutable":
            return math.inf
        return self.ttl if self.mode == "ttl" else 0.0

    def reuse_for(self, local_max: float) -> float:
        """Seconds a second-level cache (a gateway's) may reuse metadata it got from the master.

        ``immutable``: forever; ``always``: never; ``ttl``: the shorter of the TTL and
        ``local_max``, so the sum stays close to the promise.
        """
        if self.mode == "ttl":
            return min(self.ttl, local_max)
        return self.metadata_ttl

    def __str__(self) -> str:
        return f"ttl={self.ttl:g}" if self.mode == "ttl" else self.mode


def parse_consistency(text: str) -> Consistency:
    """``immutable``, ``always``, ``ttl`` (60 s) or ``ttl=SECONDS``; ValueError otherwise."""
    word, eq, value = text.strip().lower().partition("=")
    if word == "immutable" and not eq:
        return Consistency("immutable")
    if word == "always" and not eq:
        return Consistency("always")
    if word == "ttl":
        if not eq:
            return Consistency()
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not 0 < seconds < math.inf:
            raise ValueError(f"consistency {text!r}: ttl=SECONDS needs a positive number of seconds")
        return Consistency("ttl", seconds)
    raise ValueError(f"consistency {text!r}: expected immutable, ttl=SECONDS or always")


def from_ttl(seconds: float) -> Consistency:
    """The mode a plain metadata TTL amounts to (0: always)."""
    return Consistency("ttl", seconds) if seconds > 0 else Consistency("always")

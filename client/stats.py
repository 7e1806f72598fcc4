"""Cache statistics the workers report, and the cluster view operators read.

Each worker counts, since it started, the block reads it answered from each
tier and from the under-store, and what it read from the under-store (misses
and load jobs alike). It sends these cumulative counters in every heartbeat
(``HeartbeatRequest.stats``, keys below); the master keeps the latest per
worker and hands them out in ``WorkerInfo.stats``. This module is pure: it
names the counters and turns a list of workers into the figures ``pipecache
report``, the status page and the master's gauges show, so the three agree.

Counters restart at zero with their worker, and a worker the master dropped
takes its counters with it: cluster totals cover the live workers only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .protocol import TIERS, WorkerInfo

HITS = {tier: f"hits_{tier}" for tier in TIERS}
"""Block reads answered from a tier, by tier."""
HIT_BYTES = {tier: f"bytes_{tier}" for tier in TIERS}
"""Bytes served from a tier, by tier."""
MISSES = "misses"
"""Block reads that had to go to the under-store."""
MISS_BYTES = "bytes_miss"
"""Bytes served after a miss."""
UFS_READS = "ufs_reads"
"""Reads issued to the under-store (misses and load jobs)."""
UFS_BYTES = "ufs_bytes"
"""Bytes read from the under-store (whole blocks: misses and load jobs)."""
STAT_KEYS = (*HITS.values(), *HIT_BYTES.values(), MISSES, MISS_BYTES, UFS_READS, UFS_BYTES)


def hits(stats: Mapping[str, int]) -> int:
    return sum(stats.get(k, 0) for k in HITS.values())


def reads(stats: Mapping[str, int]) -> int:
    """Block reads answered, from any tier or the under-store."""
    return hits(stats) + stats.get(MISSES, 0)


def bytes_served(stats: Mapping[str, int]) -> int:
    return sum(stats.get(k, 0) for k in HIT_BYTES.values()) + stats.get(MISS_BYTES, 0)


def hit_ratio(stats: Mapping[str, int]) -> float | None:
    """Share of block reads answered from a tier; None before the first read."""
    total = reads(stats)
    return hits(stats) / total if total else None


def byte_hit_ratio(stats: Mapping[str, int]) -> float | None:
    """Share of bytes served from a tier; None before the first byte."""
    total = bytes_served(stats)
    return sum(stats.get(k, 0) for k in HIT_BYTES.values()) / total if total else None


def _add(into: dict[str, int], more: Mapping[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


@dataclass(frozen=True, slots=True)
class ClusterSummary:
    """Totals over the live workers."""

    workers: int = 0
    reporting: int = 0
    """Workers that sent statistics (older ones send none)."""
    blocks: int = 0
    capacity: dict[str, int] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    tenants: dict[str, int] = field(default_factory=dict)
    """Bytes of cache charged to each tenant."""

    def to_json(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "workers_reporting": self.reporting,
            "blocks": self.blocks,
            "capacity": self.capacity,
            "usage": self.usage,
            "tenants": self.tenants,
            **stats_json(self.stats),
        }


def summarize(workers: Iterable[WorkerInfo]) -> ClusterSummary:
    """Capacity, use and counters summed over ``workers``."""
    n = reporting = blocks = 0
    capacity: dict[str, int] = {}
    usage: dict[str, int] = {}
    stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
    tenants: dict[str, int] = {}
    for w in workers:
        n += 1
        reporting += bool(w.stats)
        blocks += w.blocks
        _add(capacity, w.capacity)
        _add(usage, w.usage)
        _add(stats, {k: w.stats.get(k, 0) for k in STAT_KEYS})
        _add(tenants, w.tenants)
    return ClusterSummary(n, reporting, blocks, capacity, usage, stats, tenants)


def stats_json(stats: Mapping[str, int]) -> dict[str, Any]:
    """The counters with what follows from them, for ``--json`` output."""
    return {
        "stats": {k: stats.get(k, 0) for k in STAT_KEYS},
        "hit_ratio": hit_ratio(stats),
        "byte_hit_ratio": byte_hit_ratio(stats),
        "bytes_served": bytes_served(stats),
        "ufs_bytes": stats.get(UFS_BYTES, 0),
    }


# ---- formatting for people ---------------------------------------------------------


def human_bytes(n: float) -> str:
    """1536 -> '1.5KiB' (binary units, one decimal; whole bytes below 1 KiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_eta(seconds: float | None) -> str:
    """Seconds as 'MM:SS', or 'H:MM:SS' from an hour; '--:--' when unknown."""
    if seconds is None:
        return "--:--"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def percent(ratio: float | None) -> str:
    """0.875 -> '87.5%'; '-' for None (nothing measured yet)."""
    return "-" if ratio is None else f"{ratio * 100:.1f}%"

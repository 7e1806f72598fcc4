"""The worker's Prometheus metrics, on a registry of its own.

Each app gets its own ``CollectorRegistry`` (never the global one), so several
workers can live in one process, as they do in tests. Tier sizes and the
corrupt-block count are read from the store when scraped, so they are never
stale and cost nothing between scrapes.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..client import stats as st
from ..client.protocol import TIERS
from ..tiering.readtags import ReadTags
from ..tiering.store import COUNTERS, TieredStore


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    """Counters the request path updates."""

    registry: CollectorRegistry
    hit_bytes: Counter
    """Bytes served from a tier, by tier (memory or ssd)."""
    miss_bytes: Counter
    """Bytes served that had to come from the under-store."""
    ufs_read_bytes: Counter
    """Bytes read from the under-store (whole blocks)."""
    ufs_requests: Counter
    """Reads issued to the under-store (failed ones included)."""
    requests: Counter
    """Block requests, by tier (memory, ssd, ufs or none) and HTTP status."""
    promotions_failed: Counter
    """Background promotions (SSD to memory) that raised."""
    totals: Tally[str] = field(default_factory=Tally)
    """The same events as plain cumulative counts (``client.stats`` names), for heartbeats."""
    tags: ReadTags = field(default_factory=ReadTags)
    """Reads of held blocks per hold (tags come with the master's pins), for heartbeats."""

    def served(self, tier: str, nbytes: int, block_id: str = "") -> None:
        """Count one block read answered from ``tier``: memory, ssd, or ufs after a miss."""
        if block_id:
            self.tags.read(block_id, tier != "ufs")
        if tier == "ufs":
            self.miss_bytes.inc(nbytes)
            self.totals[st.MISSES] += 1
            self.totals[st.MISS_BYTES] += nbytes
        else:
            self.hit_bytes.labels(tier).inc(nbytes)
            self.totals[st.HITS[tier]] += 1
            self.totals[st.HIT_BYTES[tier]] += nbytes

    def ufs_request(self) -> None:
        self.ufs_requests.inc()
        self.totals[st.UFS_READS] += 1

    def ufs_read(self, nbytes: int) -> None:
        self.ufs_read_bytes.inc(nbytes)
        self.totals[st.UFS_BYTES] += nbytes

    def snapshot(self) -> dict[str, int]:
        """Every counter of ``client.stats.STAT_KEYS``, zeros included."""
        return {k: self.totals[k] for k in st.STAT_KEYS}

    @classmethod
    def create(cls) -> WorkerMetrics:
        reg = CollectorRegistry(auto_describe=True)
        metrics = cls(
            registry=reg,
            hit_bytes=Counter(
                "pipecache_cache_hit_bytes", "Bytes served from a cache tier.", ["tier"],
                registry=reg,
            ),
            miss_bytes=Counter(
                "pipecache_cache_miss_bytes", "Bytes served that came from the under-store.",
                registry=reg,
            ),
            ufs_read_bytes=Counter(
                "pipecache_ufs_read_bytes", "Bytes read from the under-store.", registry=reg
            ),
            ufs_requests=Counter(
                "pipecache_ufs_requests", "Reads issued to the under-store.", registry=reg
            ),
            requests=Counter(
                "pipecache_worker_requests", "Block requests by tier and status.",
                ["tier", "status"], registry=reg,
            ),
            promotions_failed=Counter(
                "pipecache_worker_promotion_errors", "Background promotions that failed.",
                registry=reg,
            ),
        )
        # Every tier's series exists from the start (at 0), so rates and dashboards
        # work before the first hit of a tier.
        for tier in TIERS:
            metrics.hit_bytes.labels(tier)
        return metrics


class StoreCollector(Collector):
    """Reads tier usage, budgets and corruption counts from the store at scrape time."""

    def __init__(self, store: Callable[[], TieredStore | None]) -> None:
        self._store = store

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        store = self._store()
        used = GaugeMetricFamily(
            "pipecache_worker_tier_used_bytes", "Bytes held per tier.", labels=["tier"]
        )
        cap = GaugeMetricFamily(
            "pipecache_worker_tier_capacity_bytes", "Budget per tier.", labels=["tier"]
        )
        corrupt = CounterMetricFamily(
            "pipecache_worker_corrupt_blocks", "SSD block files found corrupt and dropped."
        )
        events = CounterMetricFamily(
            "pipecache_worker_store_events",
            "Store events: puts, hits per tier, promotions, demotions, evictions, SSD write errors...",
            labels=["event"],
        )
        pinned = GaugeMetricFamily(
            "pipecache_worker_pinned_blocks", "Resident blocks pinned on the master's request."
        )
        pinned_bytes = GaugeMetricFamily(
            "pipecache_worker_pinned_bytes", "Bytes held by pinned blocks per tier.", labels=["tier"]
        )
        quota_used = GaugeMetricFamily(
            "pipecache_worker_quota_used_bytes",
            "Bytes of cache charged to each tenant on this worker (memory and SSD, each block once).",
            labels=["tenant"],
        )
        quota_limit = GaugeMetricFamily(
            "pipecache_worker_quota_limit_bytes",
            "This worker's share of each tenant's cache quota.",
            labels=["tenant"],
        )
        if store is not None:
            for tenant, (used_bytes, limit) in sorted(store.quotas().items()):
                quota_used.add_metric([tenant], used_bytes)
                if limit is not None:
                    quota_limit.add_metric([tenant], limit)
            for tier, value in store.usage().items():
                used.add_metric([tier], value)
            for tier, value in store.capacity().items():
                cap.add_metric([tier], value)
            stats = store.stats()
            for name in COUNTERS:  # the event counts, not the levels stats() also reports
                events.add_metric([name], stats[name])
            corrupt.add_metric([], stats.get("corrupt_dropped", 0))
            pinned.add_metric([], stats["pinned_blocks"])
            for tier in TIERS:
                pinned_bytes.add_metric([tier], stats[f"pinned_{tier}_bytes"])
        yield used
        yield cap
        yield corrupt
        yield events
        yield pinned
        yield pinned_bytes
        yield quota_used
        yield quota_limit

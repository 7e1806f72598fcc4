"""Cluster-wide cache gauges on the master's /metrics, read from the workers' last beats.

They are gauges, not counters: a total over the live workers drops when a
worker leaves or restarts. Per-worker series stay on each worker's own
/metrics; these spare a dashboard the sum (and the master knows who is alive).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..client import stats as st
from .state import ClusterState


class ClusterCollector(Collector):
    """Capacity, use, hits, misses and under-store bytes summed over live workers, at scrape time."""

    def __init__(self, state: ClusterState) -> None:
        self._state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = st.summarize(self._state.workers())

        def tiered(name: str, doc: str, values: dict[str, int]) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=["tier"])
            for tier, v in sorted(values.items()):
                g.add_metric([tier], v)
            return g

        yield tiered("pipecache_master_tier_capacity_bytes", "Tier budget over live workers.", s.capacity)
        yield tiered("pipecache_master_tier_used_bytes", "Tier bytes held over live workers.", s.usage)
        yield tiered(
            "pipecache_master_hits",
            "Block reads answered from a tier, over live workers.",
            {t: s.stats[k] for t, k in st.HITS.items()},
        )
        yield tiered(
            "pipecache_master_served_bytes",
            "Bytes served by live workers, by source (a tier, or ufs after a miss).",
            {**{t: s.stats[k] for t, k in st.HIT_BYTES.items()}, "ufs": s.stats[st.MISS_BYTES]},
        )
        yield GaugeMetricFamily(
            "pipecache_master_misses",
            "Block reads that went to the under-store, over live workers.",
            value=s.stats[st.MISSES],
        )
        yield GaugeMetricFamily(
            "pipecache_master_ufs_read_bytes",
            "Bytes live workers read from the under-store (misses and load jobs).",
            value=s.stats[st.UFS_BYTES],
        )
        tenants = GaugeMetricFamily(
            "pipecache_master_tenant_cache_used_bytes",
            "Bytes of cache charged to each tenant, over live workers.",
            labels=["tenant"],
        )
        for name, used in sorted(s.tenants.items()):
            tenants.add_metric([name], used)
        yield tenants
        ratio = st.hit_ratio(s.stats)
        yield GaugeMetricFamily(
            "pipecache_master_hit_ratio",
            "Share of block reads answered from a tier (NaN before the first read).",
            value=float("nan") if ratio is None else ratio,
        )

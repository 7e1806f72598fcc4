"""The worker's counters: Prometheus series and the plain totals its heartbeats carry."""

from __future__ import annotations

from pipecache.tiering.blocks import block_id
from pipecache.tiering.store import StoreConfig, TieredStore
from pipecache.worker.metrics import StoreCollector, WorkerMetrics
from prometheus_client import CollectorRegistry


def test_worker_counts_what_it_serves() -> None:
    m = WorkerMetrics.create()
    m.served("memory", 10)
    m.served("ssd", 20)
    m.served("ufs", 30)
    m.ufs_request()
    m.ufs_read(40)
    snap = m.snapshot()
    assert snap == {"hits_memory": 1, "hits_ssd": 1, "bytes_memory": 10, "bytes_ssd": 20, "misses": 1,
                    "bytes_miss": 30, "ufs_reads": 1, "ufs_bytes": 40}
    # The Prometheus series count the same bytes.
    assert m.registry.get_sample_value("pipecache_cache_hit_bytes_total", {"tier": "ssd"}) == 20
    assert m.registry.get_sample_value("pipecache_cache_miss_bytes_total") == 30


def test_store_collector_exports_each_tenants_use_and_share() -> None:
    store = TieredStore(StoreConfig(memory_bytes=1000))
    store.set_quotas({"vision": 250})
    for i in range(4):
        store.put(block_id("m", "k", "e", i), b"x" * 100, "vision")
    store.put(block_id("m", "k", "e", 9), b"x" * 100, "nlp")
    reg = CollectorRegistry()
    reg.register(StoreCollector(lambda: store))
    assert reg.get_sample_value("pipecache_worker_quota_used_bytes", {"tenant": "vision"}) == 200
    assert reg.get_sample_value("pipecache_worker_quota_limit_bytes", {"tenant": "vision"}) == 250
    assert reg.get_sample_value("pipecache_worker_quota_used_bytes", {"tenant": "nlp"}) == 100
    assert reg.get_sample_value("pipecache_worker_quota_limit_bytes", {"tenant": "nlp"}) is None
    assert reg.get_sample_value("pipecache_worker_store_events_total", {"event": "quota_evictions"}) == 2


def test_reads_of_tagged_blocks_count_per_hold() -> None:
    m = WorkerMetrics.create()
    m.tags.tag("hold", ["0123456789abcdef"])
    m.served("memory", 10, "0123456789abcdef")
    m.served("ufs", 10, "0123456789abcdef")
    m.served("memory", 10, "fedcba9876543210")
    m.served("ssd", 10)
    assert m.tags.counts() == {"hold": [2, 1]}

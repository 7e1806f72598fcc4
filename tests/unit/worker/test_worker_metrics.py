"""The worker's counters: Prometheus series and the plain totals its heartbeats carry."""

from __future__ import annotations

from pipecache.worker.metrics import WorkerMetrics


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

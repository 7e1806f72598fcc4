"""The workers' counters in the master: kept per worker from beats, summed into gauges."""

from __future__ import annotations

import math

from pipecache.client.protocol import HeartbeatRequest, RegisterRequest
from pipecache.master.gauges import ClusterCollector
from pipecache.master.state import ClusterState
from prometheus_client import CollectorRegistry

TIMEOUT = 10.0


def _state() -> ClusterState:
    s = ClusterState(TIMEOUT)
    s.register(RegisterRequest("w1", "http://w1:1", {"memory": 100, "ssd": 400}, {"memory": 10}), 0.0)
    s.register(RegisterRequest("w2", "http://w2:1", {"memory": 100, "ssd": 0}, {"memory": 30}), 0.0)
    return s


def test_beats_replace_counters_and_a_beat_without_them_keeps_the_last() -> None:
    s = _state()
    assert [w.stats for w in s.workers()] == [{}, {}]
    s.heartbeat(HeartbeatRequest("w1", stats={"hits_memory": 2, "misses": 1}), 1.0)
    s.heartbeat(HeartbeatRequest("w1", stats={"hits_memory": 5, "misses": 1}), 2.0)
    s.heartbeat(HeartbeatRequest("w1"), 3.0)  # an older worker's beat, or one without news
    assert s.workers()[0].stats == {"hits_memory": 5, "misses": 1}
    s.expire(2.0 + TIMEOUT + 1)
    assert [w.worker_id for w in s.workers()] == ["w1"]  # w2 never beat after 0.0


def _samples(state: ClusterState) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reg = CollectorRegistry()
    reg.register(ClusterCollector(state))
    return {
        (smp.name, tuple(sorted(smp.labels.items()))): smp.value
        for fam in reg.collect()
        for smp in fam.samples
    }


def test_gauges_sum_the_live_workers() -> None:
    s = _state()
    got = _samples(s)
    assert math.isnan(got[("pipecache_master_hit_ratio", ())])  # nothing read yet
    s.heartbeat(HeartbeatRequest("w1", stats={"hits_memory": 3, "hits_ssd": 1, "misses": 1,
                                              "bytes_memory": 30, "bytes_ssd": 10, "bytes_miss": 10,
                                              "ufs_reads": 4, "ufs_bytes": 40}), 1.0)
    s.heartbeat(HeartbeatRequest("w2", stats={"misses": 3, "bytes_miss": 30, "ufs_bytes": 30}), 1.0)
    got = _samples(s)
    assert got[("pipecache_master_tier_capacity_bytes", (("tier", "memory"),))] == 200
    assert got[("pipecache_master_tier_capacity_bytes", (("tier", "ssd"),))] == 400
    assert got[("pipecache_master_tier_used_bytes", (("tier", "memory"),))] == 40
    assert got[("pipecache_master_hits", (("tier", "memory"),))] == 3
    assert got[("pipecache_master_hits", (("tier", "ssd"),))] == 1
    assert got[("pipecache_master_misses", ())] == 4
    assert got[("pipecache_master_served_bytes", (("tier", "ufs"),))] == 40
    assert got[("pipecache_master_ufs_read_bytes", ())] == 70
    assert got[("pipecache_master_hit_ratio", ())] == 0.5

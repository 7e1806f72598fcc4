"""Cache counters: their wire form, hostile input, and the cluster figures made from them."""

from __future__ import annotations

import pytest
from pipecache.client import stats as st
from pipecache.client.protocol import MAX_STATS, HeartbeatRequest, WorkerInfo, pack, unpack
from pipecache.tiering.errors import BadRequest

W1 = WorkerInfo(
    "w1", "http://a:1", {"memory": 100, "ssd": 1000}, {"memory": 40, "ssd": 100}, blocks=5,
    stats={"hits_memory": 6, "hits_ssd": 2, "misses": 2, "bytes_memory": 600, "bytes_ssd": 200,
           "bytes_miss": 200, "ufs_reads": 3, "ufs_bytes": 300},
)
W2 = WorkerInfo("w2", "http://b:1", {"memory": 100, "ssd": 0}, {"memory": 60}, blocks=1,
                stats={"hits_memory": 0, "misses": 10, "bytes_miss": 1000, "ufs_bytes": 1000})
OLD = WorkerInfo("w3", "http://c:1", {"memory": 50}, {"memory": 5})  # sends no statistics


def test_ratios_and_totals_of_one_worker() -> None:
    assert st.hits(W1.stats) == 8 and st.reads(W1.stats) == 10
    assert st.hit_ratio(W1.stats) == pytest.approx(0.8)
    assert st.bytes_served(W1.stats) == 1000
    assert st.byte_hit_ratio(W1.stats) == pytest.approx(0.8)
    assert st.hit_ratio({}) is None and st.byte_hit_ratio({}) is None


def test_summary_sums_live_workers_and_counts_silent_ones() -> None:
    s = st.summarize([W1, W2, OLD])
    assert (s.workers, s.reporting, s.blocks) == (3, 2, 6)
    assert s.capacity == {"memory": 250, "ssd": 1000}
    assert s.usage == {"memory": 105, "ssd": 100}
    assert s.stats["misses"] == 12 and s.stats["ufs_bytes"] == 1300
    assert st.hit_ratio(s.stats) == pytest.approx(8 / 20)
    j = s.to_json()
    assert j["workers_reporting"] == 2 and j["bytes_served"] == 2000 and j["ufs_bytes"] == 1300
    assert set(j["stats"]) == set(st.STAT_KEYS)
    assert st.summarize([]).to_json()["hit_ratio"] is None


def test_heartbeat_stats_travel_only_when_set() -> None:
    plain = HeartbeatRequest("w1")
    assert "stats" not in plain.to_wire()  # what an older master is used to
    beat = HeartbeatRequest("w1", stats={"hits_memory": 3})
    assert HeartbeatRequest.unpack(beat.pack()).stats == {"hits_memory": 3}
    # A beat from a worker that predates the field decodes with no statistics.
    assert HeartbeatRequest.from_wire(unpack(pack({"worker_id": "w1"}))).stats == {}


@pytest.mark.parametrize(
    "stats",
    [
        {"hits_memory": -1},
        {"": 1},
        {"x" * 65: 1},
        {f"k{i}": 1 for i in range(MAX_STATS + 1)},
        {"hits_memory": "7"},
        {"hits_memory": True},
        {"hits_memory": 1.5},
        [1, 2],
    ],
)
def test_hostile_stats_are_refused(stats: object) -> None:
    with pytest.raises(BadRequest):
        HeartbeatRequest.from_wire({"worker_id": "w1", "stats": stats})
    with pytest.raises(BadRequest):
        WorkerInfo.from_wire({"worker_id": "w1", "address": "http://a:1", "stats": stats})


def test_human_formats() -> None:
    assert st.human_bytes(0) == "0B" and st.human_bytes(1536) == "1.5KiB"
    assert st.human_bytes(3 << 40) == "3.0TiB" and st.human_bytes(5 << 50) == "5120.0TiB"
    assert st.human_eta(None) == "--:--" and st.human_eta(65) == "01:05" and st.human_eta(3725) == "1:02:05"
    assert st.percent(None) == "-" and st.percent(0.8754) == "87.5%"

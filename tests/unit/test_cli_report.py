"""`pipecache report` output, for people and for scripts."""

from __future__ import annotations

import json

from pipecache.cli.report import report_json, report_lines
from pipecache.client.protocol import WorkerInfo

W = WorkerInfo("w0", "http://h:1", {"memory": 1 << 20, "ssd": 0}, {"memory": 1 << 18}, 3,
               stats={"hits_memory": 1, "hits_ssd": 2, "misses": 1, "bytes_memory": 100, "bytes_ssd": 200,
                      "bytes_miss": 100, "ufs_reads": 1, "ufs_bytes": 4096},
               tenants={"vision": 3 << 18, "nlp": 1 << 10})


def test_lines_for_people() -> None:
    lines = report_lines([W, WorkerInfo("w1", "http://h:2", {"memory": 1 << 20})])
    assert lines[0] == "cluster: 2 workers, 3 blocks"
    assert "hit ratio 75.0% of 4 block reads (75.0% of bytes)" in lines[1]
    assert "under-store read 4.0KiB in 1 reads" in lines[1]
    assert any(line.split()[:4] == ["memory", "256.0KiB", "/", "2.0MiB"] for line in lines)
    assert any("1 worker(s) send no statistics" in line for line in lines)
    assert "  no statistics reported" in lines
    assert any(line.strip().startswith("ssd") and line.endswith("(off)") for line in lines)
    assert report_lines([]) == ["no live workers"]


def test_json_for_scripts() -> None:
    out = json.loads(json.dumps(report_json([W])))
    assert out["cluster"]["hit_ratio"] == 0.75 and out["cluster"]["ufs_bytes"] == 4096
    (w,) = out["workers"]
    assert w["worker_id"] == "w0" and w["reporting"] is True and w["bytes_served"] == 400
    assert w["usage"] == {"memory": 1 << 18}



def test_tenants_use_against_their_quota() -> None:
    other = WorkerInfo("w1", "http://h:2", {"memory": 1 << 20}, tenants={"vision": 1 << 18})
    lines = report_lines([W, other], {"vision": 2 << 20, "audio": 1 << 20})
    assert "  tenant audio         0B / 1.0MiB  (0.0%)" in lines
    assert "  tenant nlp       1.0KiB / no quota" in lines
    assert "  tenant vision    1.0MiB / 2.0MiB  (50.0%)" in lines
    out = json.loads(json.dumps(report_json([W, other], {"vision": 2 << 20})))
    assert out["cluster"]["tenants"] == {"vision": 1 << 20, "nlp": 1 << 10}
    assert out["cluster"]["quotas"] == {"vision": 2 << 20}

"""The client adapter's pure helpers and the timeline records."""

from __future__ import annotations

import io
import json

from pipecache.client import JobFailure, JobInfo
from pipecache.watcher.preloader import describe, load_path
from pipecache.watcher.scheduler import Release, RunRef, Submit
from pipecache.watcher.timeline import TimelineWriter, record


def test_load_path() -> None:
    assert load_path("minio://mlpipeline/vocab.txt") == "s3://mlpipeline/vocab.txt"
    assert load_path("s3://b/k/") == "s3://b/k/"


def test_describe_finished_job() -> None:
    info = JobInfo(
        "job-1",
        "failed",
        objects_total=3,
        objects_done=2,
        bytes_done=10,
        created=100.0,
        updated=101.5,
        failed=[JobFailure("b", "k", "NoSuchKey")],
        reason="",
    )
    assert describe(info) == "2/3 objects, 10 bytes, 1.5s, failed: b/k"


def test_timeline_records_are_json_lines() -> None:
    run = RunRef("ns", "wf", "u")
    out = io.StringIO()
    w = TimelineWriter(out)
    w(Submit(run, "train", ("s3://a/b",), 1, 2, "kfp:ns/wf/train"), 12.3456)
    w(Release(run, "kfp:ns/wf/train", evict_first=True), 13.0)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines[0] == {
        "t": 12.346,
        "action": "Submit",
        "run": "ns/wf",
        "step": "train",
        "uris": ["s3://a/b"],
        "distance": 1,
        "priority": 2,
        "hold": "kfp:ns/wf/train",
    }
    assert lines[1] == record(Release(run, "kfp:ns/wf/train", evict_first=True), 13.0) | {"t": 13.0}

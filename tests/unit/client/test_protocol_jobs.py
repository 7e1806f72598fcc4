"""Wire messages of load jobs: round trips, defaults for older peers, path parsing."""

from __future__ import annotations

import pytest
from pipecache.client.protocol import (
    BlockRef,
    Command,
    HeartbeatReply,
    HeartbeatRequest,
    JobInfo,
    JobsReply,
    LoadFailure,
    LoadRequest,
    LoadTask,
    split_path,
    unpack,
)
from pipecache.tiering.errors import BadRequest


def test_load_command_round_trip_and_ref() -> None:
    ref = BlockRef("b", "k", "e", 1, 10, 4)
    task = LoadTask.of(ref)
    cmd = Command("load", [ref.block_id()], [task])
    back = HeartbeatReply.unpack(HeartbeatReply([cmd]).pack())
    assert back.commands == [cmd] and back.commands[0].loads[0].ref() == ref


def test_free_command_from_an_older_master_has_no_loads() -> None:
    assert Command.from_wire({"kind": "free", "blocks": []}).loads == []


def test_load_task_is_checked() -> None:
    with pytest.raises(BadRequest):
        LoadTask.from_wire({"bucket": "b", "key": "k", "etag": "e", "size": 4, "block_size": 4, "index": 1})


def test_heartbeat_failures_travel_only_when_present() -> None:
    assert "load_failed" not in unpack(HeartbeatRequest("w").pack())
    req = HeartbeatRequest("w", load_failed=[LoadFailure("00000000000000ff", "NoSuchKey: x")])
    assert HeartbeatRequest.unpack(req.pack()) == req
    with pytest.raises(BadRequest):
        HeartbeatRequest.from_wire({"worker_id": "w", "load_failed": [{"block_id": "nope"}]})


def test_load_request_paths() -> None:
    assert split_path("s3://b/p/q") == ("b", "p/q")
    assert split_path("b") == ("b", "")
    assert LoadRequest.unpack(LoadRequest(["b/x"], 3).pack()).priority == 3
    for bad in ([], ["s3://"], ["gs://b/x"], ["/x"]):
        with pytest.raises(BadRequest):
            LoadRequest.from_wire({"paths": bad})


def test_job_info_fraction_and_round_trip() -> None:
    info = JobInfo("job-1", "running", blocks_total=4, blocks_resident=1, eta_seconds=None)
    assert info.fraction == 0.25 and not info.finished
    assert JobInfo("job-2", "done").fraction == 1.0
    assert JobsReply.unpack(JobsReply([info]).pack()).jobs == [info]

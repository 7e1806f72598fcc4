"""Durable master state: load jobs journaled, replayed into a fresh manager, history bounded."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from pipecache.client.protocol import ObjectInfo, WorkerInfo
from pipecache.master.durable import Durable, JobsProvider, created_body, finished_body
from pipecache.master.jobs import Job, JobManager

BS = 100
W = [WorkerInfo("w1", "http://w1", capacity={"memory": 1 << 30})]
OFFSET = 1_700_000_000.0
"""Epoch offset of the manager's clock in these tests (a restarted one may differ)."""


def nowhere(ids: object) -> dict[str, list[str]]:
    return {}


class Side:
    """One master's durable side: a job manager journaled through ``Durable`` in ``path``."""

    def __init__(self, path: Path, offset: float = OFFSET, keep: int = 1000, every: int = 1000) -> None:
        self.jobs = JobManager()
        self.durable = Durable(checkpoint_every=every)
        self.durable.register("jobs", JobsProvider(self.jobs, lambda: offset, keep=keep))
        self.offset = offset
        self.replayed = self.durable.open(path)

    def create(self, paths: list[str], priority: int = 0, now: float = 1.0, hold: str = "") -> Job:
        job = self.jobs.create(paths, priority, now)
        job.hold = hold
        self.durable.record("jobs", "created", created_body(job, self.offset))
        return job

    def settle(self) -> None:
        for job in self.jobs.take_finished():
            self.durable.record("jobs", "finished", finished_body(job, self.offset))
        self.jobs.prune(1000)

    def infos(self) -> list[Any]:
        return [self.jobs.info(j, 100.0, clock_offset=self.offset) for j in self.jobs.jobs()]


def run_to_done(side: Side, job: Job, size: int) -> None:
    o = ObjectInfo("b", f"k-{job.id}", size, "e", 0.0, block_size=BS)
    side.jobs.plan(job, [o], W, nowhere, 2.0)
    side.jobs.report([o.block_id(i) for i in range(-(-size // BS))], 3.0)
    side.settle()


@pytest.mark.parametrize("close", [True, False], ids=["clean-stop", "killed"])
def test_jobs_survive_a_restart(tmp_path: Path, close: bool) -> None:
    a = Side(tmp_path)
    done = a.create(["s3://b/done/"], priority=2)
    run_to_done(a, done, 250)
    cancelled = a.create(["s3://b/c/"])
    a.jobs.cancel(cancelled, 4.0)
    a.settle()
    failed = a.create(["s3://nobucket/"])
    a.jobs.fail(failed, "NoSuchBucket: gone", 5.0)
    a.settle()
    pending = a.create(["s3://b/x/", "b/y"], priority=7, hold="run-7/step-3")
    a.jobs.plan(pending, [ObjectInfo("b", "x/1", 10, "e", 0.0, block_size=BS)], W, nowhere, 6.0)
    before = a.infos()
    if close:
        a.durable.close()
    else:  # as if killed: records only, no checkpoint
        assert a.durable.journal is not None
        a.durable.journal.close()

    b = Side(tmp_path, offset=OFFSET + 50.0)  # a new process: its monotonic clock differs
    assert b.replayed == (0 if close else 7)
    after = b.infos()
    # Finished jobs come back whole (epoch times kept although the clock moved).
    assert after[:3] == before[:3]
    # The unfinished one comes back to be listed again: same id, paths, priority and creation.
    p = after[3]
    assert (p.id, p.state, p.paths, p.priority, p.created) == (
        "job-4",
        "listing",
        ["s3://b/x/", "b/y"],
        7,
        before[3].created,
    )
    assert p.blocks_total == 0  # re-planned from a fresh listing, never double counted
    assert b.jobs.get("job-4").hold == "run-7/step-3"  # type: ignore[union-attr]
    assert b.jobs.create(["b/z"], 0, 1.0).id == "job-5"


def test_checkpoints_bound_the_journal_and_history(tmp_path: Path) -> None:
    a = Side(tmp_path, keep=3, every=4)
    for _ in range(6):
        job = a.create(["b/p"])
        a.jobs.cancel(job, 2.0)
        a.settle()
    a.jobs.prune(3)
    journals = [p for p in tmp_path.iterdir() if p.name.startswith("journal-")]
    assert len(journals) == 1 and journals[0].stat().st_size < 1000
    b = Side(tmp_path, keep=3)
    assert [j.id for j in b.jobs.jobs()] == ["job-4", "job-5", "job-6"]
    assert b.jobs.create(["b/p"], 0, 1.0).id == "job-7"


def test_a_malformed_or_foreign_record_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = Side(tmp_path)
    a.durable.record("jobs", "created", {"id": "job-1"})  # no paths
    a.durable.record("holds", "added", {"x": 1})  # no such provider here
    a.create(["b/ok"])
    with caplog.at_level(logging.WARNING, logger="pipecache.master.durable"):
        b = Side(tmp_path)
    assert [j.id for j in b.jobs.jobs()] == ["job-1"]  # only the good record
    assert b.jobs.jobs()[0].paths == ["b/ok"]
    assert "malformed" in caplog.text and "no provider 'holds'" in caplog.text


def test_no_journal_records_nothing() -> None:
    d = Durable()
    d.register("jobs", JobsProvider(JobManager(), lambda: OFFSET))
    d.record("jobs", "created", {"id": "job-1"})
    d.close()
    with pytest.raises(ValueError):
        d.register("jobs", JobsProvider(JobManager(), lambda: OFFSET))


class Counts:
    """A snapshot-only provider (no ``apply``): journaled whole with ``Durable.save``."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    def restore(self, snapshot: Any) -> None:
        self.counts = {str(k): int(v) for k, v in snapshot.items()}


def test_a_snapshot_only_provider_joins_with_save(tmp_path: Path) -> None:
    def side() -> tuple[Durable, Counts]:
        d, c = Durable(), Counts()
        d.register("counts", c)
        d.open(tmp_path)
        return d, c

    d, c = side()
    c.counts["a"] = 1
    d.save("counts")
    c.counts["a"] = 2
    d.save("counts")
    c.counts["b"] = 3  # never saved: lost, as a change not yet journaled must be
    with pytest.raises(ValueError):
        d.record("counts", "snapshot", {})
    assert d.journal is not None
    d.journal.close()  # killed: no checkpoint at exit
    assert side()[1].counts == {"a": 2}


def test_a_failing_disk_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = Side(tmp_path)
    assert a.durable.journal is not None
    a.durable.journal.close()  # every later write fails with EBADF
    with caplog.at_level(logging.ERROR, logger="pipecache.master.durable"):
        a.create(["b/p"])
    assert "'jobs/created' not written" in caplog.text


def test_an_unreadable_snapshot_part_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from pipecache.master.journal import Journal

    j, _, _ = Journal.open(tmp_path)
    j.checkpoint({"jobs": [{"id": "job-1"}], "counts": {"a": 1}})  # a job entry without paths
    j.close()
    d, c = Durable(), Counts()
    d.register("counts", c)
    d.register("jobs", JobsProvider(JobManager(), lambda: OFFSET))
    with caplog.at_level(logging.WARNING, logger="pipecache.master.durable"):
        d.open(tmp_path)
    assert c.counts == {"a": 1}
    assert "'jobs/snapshot' is malformed" in caplog.text

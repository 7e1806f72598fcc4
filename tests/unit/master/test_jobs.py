"""The pure load-job manager: planning, dispatch bounds, completion from reports, retries."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from pipecache.client.protocol import BlockRef, ObjectInfo, WorkerInfo
from pipecache.master.jobs import JobManager
from pipecache.tiering.placement import Candidate, rank

BS = 100


def obj(key: str, size: int, bucket: str = "b") -> ObjectInfo:
    return ObjectInfo(bucket, key, size, f"e-{key}", 0.0, block_size=BS)


def worker(wid: str, gib: int = 1) -> WorkerInfo:
    return WorkerInfo(wid, f"http://{wid}", capacity={"memory": gib << 30})


W = [worker("w1"), worker("w2", 2)]


def nowhere(ids: Iterable[str]) -> dict[str, list[str]]:
    return {}


def ids(refs: list[BlockRef]) -> list[str]:
    return [r.block_id() for r in refs]


def start(m: JobManager, objects: list[ObjectInfo], priority: int = 0, now: float = 0.0):  # type: ignore[no-untyped-def]
    job = m.create(["s3://b/"], priority, now)
    plan = m.plan(job, objects, W, nowhere, now)
    return job, plan


def test_plan_places_each_block_on_its_weighted_owner() -> None:
    m = JobManager()
    objects = [obj("a", 250), obj("b", 100), obj("empty", 0)]
    job, plan = start(m, objects)
    cands = [Candidate(w.worker_id, w.weight) for w in W]
    for wid, refs in plan.items():
        for r in refs:
            assert rank(r.block_id(), cands)[0] == wid
    assert sum(len(v) for v in plan.values()) == 4
    assert (job.state, job.objects_total, job.objects_done) == ("running", 3, 1)  # empty: done
    assert (job.bytes_total, job.bytes_done, job.blocks_total, job.blocks_resident) == (350, 0, 4, 0)


def test_plan_skips_resident_blocks() -> None:
    m = JobManager()
    a = obj("a", 250)
    held = {a.block_id(0): ["w1"], a.block_id(2): ["w2"]}
    job = m.create(["b/a"], 0, 0.0)
    plan = m.plan(job, [a], W, lambda wanted: {b: held[b] for b in wanted if b in held}, 0.0)
    assert [r.index for refs in plan.values() for r in refs] == [1]
    assert (job.blocks_total, job.blocks_resident, job.bytes_done) == (3, 2, 150)


def test_all_resident_at_plan_is_done_at_once() -> None:
    m = JobManager()
    a = obj("a", 50)
    job = m.create(["b/a"], 0, 0.0)
    m.plan(job, [a], W, lambda wanted: {b: ["w1"] for b in wanted}, 0.0)
    assert job.state == "done" and job.objects_done == 1


def test_duplicate_objects_from_overlapping_paths_count_once() -> None:
    m = JobManager()
    job, plan = start(m, [obj("a", 150), obj("a", 150)])
    assert (job.objects_total, job.blocks_total, job.bytes_total) == (1, 2, 150)


def test_in_flight_bound_per_worker() -> None:
    m = JobManager(max_in_flight=3)
    job, plan = start(m, [obj(f"k{i}", 10) for i in range(20)])
    for wid in plan:
        sent = m.dispatch(wid, 1.0)
        assert len(sent) == min(3, len(plan[wid]))
        assert m.dispatch(wid, 1.0) == []  # full
        m.report(ids(sent[:1]), 2.0)
        assert len(m.dispatch(wid, 2.0)) == min(1, len(plan[wid]) - 3)


def test_in_flight_bytes_bound_per_worker() -> None:
    # One 100-byte block per object (BS), a 250-byte window: two blocks at a time.
    m = JobManager(max_in_flight_bytes=250)
    job, plan = start(m, [obj(f"k{i}", 100) for i in range(20)])
    for wid in plan:
        sent = m.dispatch(wid, 1.0)
        assert len(sent) == min(2, len(plan[wid]))
        assert m.dispatch(wid, 1.0) == []
        m.report(ids(sent[:1]), 2.0)
        assert len(m.dispatch(wid, 2.0)) == min(1, len(plan[wid]) - 2)


def test_a_block_larger_than_the_window_still_goes_alone() -> None:
    m = JobManager(max_in_flight_bytes=50)
    job, plan = start(m, [obj("big", 100)])
    (wid,) = plan
    assert len(m.dispatch(wid, 1.0)) == 1
    assert m.dispatch(wid, 1.0) == []


def test_done_only_from_reports_not_from_dispatch() -> None:
    m = JobManager()
    job, plan = start(m, [obj("a", 250)])
    sent = [r for wid in plan for r in m.dispatch(wid, 1.0)]
    assert len(sent) == 3 and job.state == "running" and job.blocks_resident == 0
    m.report(ids(sent[:2]), 2.0)
    assert (job.state, job.blocks_resident, job.objects_done, job.bytes_done) == ("running", 2, 0, 200)
    m.report(ids(sent[:2]), 2.5)  # reported twice: counted once
    assert job.blocks_resident == 2
    m.report(ids(sent[2:]), 3.0)
    assert (job.state, job.blocks_resident, job.objects_done, job.bytes_done) == ("done", 3, 1, 250)
    assert job.updated == 3.0
    assert all(m.in_flight(w.worker_id) == 0 for w in W)


def test_unreported_task_is_redispatched_after_timeout_with_backoff() -> None:
    m = JobManager(task_timeout=10.0, retry_backoff=1.0, max_attempts=3)
    job, plan = start(m, [obj("a", 50)])
    (wid,) = plan
    first = m.dispatch(wid, 0.0)
    m.expire(W, 9.9)
    assert m.dispatch(wid, 9.9) == [] and m.in_flight(wid) == 1
    m.expire(W, 10.0)  # timed out: waits out a 1 s backoff
    assert m.in_flight(wid) == 0
    m.expire(W, 10.5)
    assert m.dispatch(wid, 10.5) == []
    m.expire(W, 11.0)
    assert m.dispatch(wid, 11.0) == first
    m.report(ids(first), 12.0)
    assert job.state == "done"


def test_failure_after_max_attempts_names_the_key_and_reason() -> None:
    m = JobManager(task_timeout=10.0, retry_backoff=1.0, max_attempts=2)
    job, plan = start(m, [obj("a", 50), obj("b", 50)])
    t = 0.0
    for _attempt in range(2):
        for wid in list(plan):
            for r in m.dispatch(wid, t):
                if r.key == "a":
                    m.failed(wid, [(r.block_id(), "NoSuchKey: gone")], t)
                else:
                    m.report([r.block_id()], t)
        t += 5.0
        m.expire(W, t)
    assert job.state == "failed"
    assert job.failed == {("b", "a"): "block 0: NoSuchKey: gone (after 2 attempts)"}
    assert (job.objects_done, job.blocks_resident) == (1, 1)
    info = m.info(job, t)
    assert [(f.bucket, f.key) for f in info.failed] == [("b", "a")]


def test_tasks_of_a_dead_worker_move_to_the_new_owner() -> None:
    m = JobManager(task_timeout=10.0)
    job, plan = start(m, [obj(f"k{i}", 10) for i in range(10)])
    sent = m.dispatch("w1", 0.0)
    m.expire([W[1]], 1.0)  # w1 left: its sent and queued tasks go to w2
    assert m.in_flight("w1") == 0
    m.expire([W[1]], 100.0)
    again = m.dispatch("w2", 100.0)
    assert set(ids(sent)) <= set(ids(again))
    m.report(ids(again), 101.0)
    assert job.state == "done"


def test_higher_priority_jobs_dispatch_first() -> None:
    m = JobManager(max_in_flight=2)
    only = [worker("w1")]
    low = m.create(["b/low"], 0, 0.0)
    m.plan(low, [obj(f"low{i}", 10) for i in range(3)], only, nowhere, 0.0)
    high = m.create(["b/high"], 5, 1.0)
    m.plan(high, [obj(f"high{i}", 10) for i in range(3)], only, nowhere, 1.0)
    first = m.dispatch("w1", 2.0)
    assert [r.key for r in first] == ["high0", "high1"]
    m.report(ids(first), 3.0)
    second = m.dispatch("w1", 3.0)
    assert [r.key for r in second] == ["high2", "low0"]


def test_cancel_stops_dispatching() -> None:
    m = JobManager(max_in_flight=2)
    job, plan = start(m, [obj(f"k{i}", 10) for i in range(10)])
    wid = next(iter(plan))
    sent = m.dispatch(wid, 1.0)
    m.cancel(job, 2.0)
    assert job.state == "cancelled" and m.in_flight(wid) == 0
    assert m.dispatch(wid, 2.0) == []
    m.report(ids(sent), 3.0)  # late arrivals change nothing
    assert job.state == "cancelled" and job.blocks_resident == 0
    m.cancel(job, 4.0)
    assert job.updated == 2.0


def test_cancel_during_listing_means_no_plan() -> None:
    m = JobManager()
    job = m.create(["b/"], 0, 0.0)
    m.cancel(job, 1.0)
    assert m.plan(job, [obj("a", 10)], W, nowhere, 1.0) == {}
    assert job.state == "cancelled" and job.blocks_total == 0


def test_listing_failure_fails_the_job() -> None:
    m = JobManager()
    job = m.create(["nobucket/"], 0, 0.0)
    m.fail(job, "NoSuchBucket: nobucket", 1.0)
    info = m.info(job, 1.0)
    assert (info.state, info.reason, info.eta_seconds) == ("failed", "NoSuchBucket: nobucket", 0.0)


def test_progress_numbers_throughput_and_eta_are_exact() -> None:
    m = JobManager()
    job, plan = start(m, [obj(f"k{i}", 100) for i in range(10)], now=0.0)
    refs = [r for wid in plan for r in m.dispatch(wid, 0.0)]
    m.report(ids(refs[:2]), 2.0)  # 200 bytes in 2 s
    info = m.info(job, 2.0)
    assert (info.objects_done, info.bytes_done, info.blocks_resident) == (2, 200, 2)
    assert info.throughput_bps == pytest.approx(100.0)
    assert info.eta_seconds == pytest.approx(8.0)  # 800 bytes left at 100 B/s
    m.report(ids(refs[2:4]), 12.0)
    info = m.info(job, 13.0)  # window of 10 s: from the sample at 2.0 (200 B) to 400 B at 13.0
    assert info.throughput_bps == pytest.approx(200 / 11)
    m.report(ids(refs[4:]), 14.0)
    info = m.info(job, 14.0)
    assert (info.state, info.objects_done, info.bytes_done, info.eta_seconds) == ("done", 10, 1000, 0.0)


def test_no_live_workers_waits_then_places() -> None:
    m = JobManager()
    job = m.create(["b/"], 0, 0.0)
    m.plan(job, [obj("a", 10)], [], nowhere, 0.0)
    assert m.dispatch("w1", 0.0) == []
    m.expire(W, 1.0)
    sent = [r for w in W for r in m.dispatch(w.worker_id, 1.0)]
    assert len(sent) == 1


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        JobManager(max_in_flight=0)


def test_a_late_report_after_a_timeout_completes_the_block_and_is_not_retried() -> None:
    m = JobManager(task_timeout=1.0, retry_backoff=1.0, max_attempts=2)
    job, plan = start(m, [obj("a", 50), obj("b", 50)])
    sent = [r for wid in plan for r in m.dispatch(wid, 0.0)]
    m.expire(W, 1.0)  # both timed out, waiting out their backoff
    m.report(ids(sent[:1]), 1.5)  # the first lands late
    m.expire(W, 2.0)
    again = [r for wid in plan for r in m.dispatch(wid, 2.0)]
    assert ids(again) == ids(sent[1:])
    m.expire(W, 3.0)  # the second times out again: given up, the first is not
    assert job.state == "failed" and list(job.failed) == [("b", sent[1].key)]
    assert (job.blocks_resident, job.objects_done) == (1, 1)


def test_finished_jobs_are_handed_out_once_and_history_is_bounded() -> None:
    m = JobManager()
    done, _ = start(m, [obj("a", 0)])  # nothing to load: done at once
    cancelled = m.create(["b/c"], 0, 1.0)
    m.cancel(cancelled, 2.0)
    failed = m.create(["b/f"], 0, 3.0)
    m.fail(failed, "listing failed", 4.0)
    m.create(["b/open"], 0, 5.0)
    assert [j.id for j in m.take_finished()] == [done.id, cancelled.id, failed.id]
    assert m.take_finished() == []
    assert m.prune(2) == [done.id]  # the oldest finished; unfinished jobs are never pruned
    assert [j.id for j in m.jobs()] == ["job-2", "job-3", "job-4"]


def test_restored_jobs_keep_their_ids_and_new_ids_follow() -> None:
    from pipecache.master.jobs import Job

    m = JobManager()
    m.restore(Job("job-41", ["b/x"], 0, 0.0))
    m.restore(Job("job-7", ["b/y"], 0, 0.0))
    assert m.create(["b/z"], 0, 1.0).id == "job-42"

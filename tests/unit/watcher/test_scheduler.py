"""Scheduler rules on workflow files: what is preloaded, protected, released and cancelled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pipecache.watcher import plan_workflow
from pipecache.watcher.scheduler import (
    Cancel,
    Notify,
    Protect,
    Release,
    RunEnded,
    RunRef,
    Scheduler,
    StepStarted,
    Submit,
    hold_name,
)

Loader = Callable[[str], dict[str, Any]]
RUN = RunRef("kubeflow-user", "prep-train-7xk2p", "uid-1")


def named(wf: dict[str, Any]) -> dict[str, Any]:
    wf["metadata"].update(name=RUN.name, namespace=RUN.namespace, uid=RUN.uid)
    return wf


def submits(actions: list[Any]) -> list[tuple[str, tuple[str, ...], int, int]]:
    return [(a.step, a.uris, a.distance, a.priority) for a in actions if isinstance(a, Submit)]


def accept(s: Scheduler, actions: list[Any], prefix: str = "job") -> list[str]:
    ids = []
    for n, a in enumerate(a for a in actions if isinstance(a, Submit)):
        ids.append(f"{prefix}-{n}")
        assert s.submitted(a, ids[-1]) == []
    return ids


def test_new_run_preloads_first_steps_nearest_first(own: Loader) -> None:
    s = Scheduler(lookahead=2)
    actions = s.observe(RUN, plan_workflow(named(own("v2_compiled.yaml"))), now=0.0)
    assert submits(actions) == [
        ("importer", ("s3://datasets/labels.csv",), 1, 2),
        ("import-base", ("s3://models/base-v1/",), 1, 2),
        (
            "prepare",
            (
                "s3://datasets/raw-2026-11/",
                "minio://mlpipeline/vocab.txt",
                "s3://datasets/extra/a.parquet",
                "s3://datasets/extra/b.parquet",
            ),
            2,
            1,
        ),
    ]
    # labels.csv was submitted for the importer: prepare and audit only protect it.
    protects = [(a.hold, a.uris) for a in actions if isinstance(a, Protect)]
    assert protects == [
        (hold_name(RUN, "prepare"), ("s3://datasets/labels.csv",)),
        (hold_name(RUN, "audit"), ("s3://datasets/labels.csv",)),
    ]
    assert [a for a in actions if isinstance(a, Submit)][
        0
    ].hold == "kfp:kubeflow-user/prep-train-7xk2p/importer"


def test_lookahead_limits_distance(own: Loader) -> None:
    s = Scheduler(lookahead=1)
    actions = s.observe(RUN, plan_workflow(named(own("v2_compiled.yaml"))), now=0.0)
    assert [step for step, *_ in submits(actions)] == ["importer", "import-base"]
    assert {p for *_, p in submits(actions)} == {1}


def test_same_status_twice_submits_nothing_new(own: Loader) -> None:
    s = Scheduler()
    plan = plan_workflow(named(own("v2_running.yaml")))
    first = s.observe(RUN, plan, now=0.0)
    accept(s, first)
    assert submits(first)
    assert s.observe(RUN, plan, now=1.0) == []


def test_upstream_inputs_learnt_later_get_one_more_job(own: Loader) -> None:
    s = Scheduler()
    accept(s, s.observe(RUN, plan_workflow(named(own("v2_compiled.yaml"))), now=0.0))
    actions = s.observe(RUN, plan_workflow(named(own("v2_running.yaml"))), now=5.0)
    got = {step: uris for step, uris, *_ in submits(actions)}
    # train runs now: its upstream input (prepare's features) is new, base-v1 was loaded already.
    assert got["train"] == ("s3://pipeline-root/prep-train/prep-train-7xk2p/prepare/features",)
    assert "importer" not in got and "import-base" not in got
    # evaluate reads train's model, known (train's driver ran) but not written yet: it waits.
    assert "evaluate" not in got
    # Steps that finished release their holds (not evict-first: the run goes on).
    released = {a.hold: a.evict_first for a in actions if isinstance(a, Release)}
    assert released == {
        hold_name(RUN, "importer"): False,
        hold_name(RUN, "import-base"): False,
        hold_name(RUN, "prepare"): False,
    }
    # They ran: their holds' reads are measured before the release.
    assert all(a.ran and a.hold == hold_name(RUN, a.step) for a in actions if isinstance(a, Release))
    assert [step for _, step, _ in s.running_holds()] == ["read-shard", "train"]


def test_lead_time_from_job_done_to_step_start(own: Loader) -> None:
    s = Scheduler()
    wf = named(own("v2_compiled.yaml"))
    ids = accept(s, s.observe(RUN, plan_workflow(wf), now=0.0))
    assert s.job_finished(ids[0], "done", now=2.0, detail="1 object") == [
        Notify(
            RUN, "PreloadComplete", "step importer: 1 input(s) resident (1 object): s3://datasets/labels.csv"
        )
    ]
    running = named(own("v2_compiled.yaml"))
    running["status"] = {
        "phase": "Running",
        "nodes": {"a": {"name": f"{RUN.name}.root.importer", "phase": "Running"}},
    }
    started = [a for a in s.observe(RUN, plan_workflow(running), now=3.5) if isinstance(a, StepStarted)]
    assert started == [StepStarted(RUN, "importer", 1.5, (ids[0],))]


def test_step_starting_before_its_data_is_late(own: Loader) -> None:
    s = Scheduler()
    ids = accept(s, s.observe(RUN, plan_workflow(named(own("v2_compiled.yaml"))), now=0.0))
    running = named(own("v2_compiled.yaml"))
    running["status"] = {
        "phase": "Running",
        "nodes": {"a": {"name": f"{RUN.name}.root.importer", "phase": "Running"}},
    }
    assert StepStarted(RUN, "importer", None, (ids[0],)) in s.observe(RUN, plan_workflow(running), now=1.0)


@pytest.mark.parametrize(("fixture", "outcome"), [("v2_finished.yaml", "failed")])
def test_run_end_cancels_and_releases_evict_first(own: Loader, fixture: str, outcome: str) -> None:
    s = Scheduler()
    ids = accept(s, s.observe(RUN, plan_workflow(named(own("v2_running.yaml"))), now=0.0))
    s.job_finished(ids[0], "done", now=1.0)
    actions = s.observe(RUN, plan_workflow(named(own(fixture))), now=2.0)
    assert [a.job_id for a in actions if isinstance(a, Cancel)] == ids[1:]
    released = [a for a in actions if isinstance(a, Release)]
    assert released and all(a.evict_first for a in released)
    # Steps that never started read nothing of their own: not measured.
    assert {a.step for a in released if a.ran} < {a.step for a in released}
    assert actions[-1] == RunEnded(RUN, outcome)
    assert s.runs == [] and s.unfinished_jobs() == ids[1:]
    assert s.observe(RUN, plan_workflow(named(own(fixture))), now=3.0) == []


def test_deleted_run_cancels(own: Loader) -> None:
    s = Scheduler()
    ids = accept(s, s.observe(RUN, plan_workflow(named(own("v1_running.yaml"))), now=0.0))
    assert ids
    actions = s.deleted(RUN)
    assert [a for a in actions if isinstance(a, Cancel)] == [Cancel(RUN, j) for j in ids]
    assert actions[-1] == RunEnded(RUN, "deleted")
    assert s.deleted(RUN) == []


def test_finished_run_first_seen_is_ignored(own: Loader) -> None:
    s = Scheduler()
    assert s.observe(RUN, plan_workflow(named(own("v2_finished.yaml"))), now=0.0) == []
    assert s.runs == []


def test_submit_refused_is_retried_and_reported(own: Loader) -> None:
    s = Scheduler()
    plan = plan_workflow(named(own("v1_running.yaml")))
    first = [a for a in s.observe(RUN, plan, now=0.0) if isinstance(a, Submit)]
    notes = s.submit_failed(first[0], "no workers")
    assert notes[0].reason == "PreloadFailed" and notes[0].warning
    # The next observation tries again; a job id that arrives after the run ended is cancelled.
    again = [a for a in s.observe(RUN, plan, now=1.0) if isinstance(a, Submit)]
    assert again == first
    s.deleted(RUN)
    assert s.submitted(first[0], "late") == [Cancel(RUN, "late")]


def test_failed_job_is_reported(own: Loader) -> None:
    s = Scheduler()
    ids = accept(s, s.observe(RUN, plan_workflow(named(own("v1_running.yaml"))), now=0.0))
    [note] = s.job_finished(ids[0], "failed", now=1.0, detail="NoSuchBucket")
    assert note.reason == "PreloadFailed" and note.warning and "NoSuchBucket" in note.message
    assert s.job_finished(ids[0], "failed", now=2.0) == []


def test_negative_lookahead_is_refused() -> None:
    with pytest.raises(ValueError):
        Scheduler(lookahead=-1)


def test_only_holds_that_exist_are_released(own: Loader) -> None:
    s = Scheduler(lookahead=3)  # report is 3 hops away at first: upcoming, but no input known
    made: set[str] = set()
    released: list[str] = []
    for fixture in ("v2_compiled.yaml", "v2_running.yaml", "v2_finished.yaml"):
        actions = s.observe(RUN, plan_workflow(named(own(fixture))), now=0.0)
        accept(s, actions)
        made |= {a.hold for a in actions if isinstance(a, Submit | Protect)}
        released += [a.hold for a in actions if isinstance(a, Release)]
    # Steps without inputs (report and publish only read upstream outputs, known too late
    # here) never had a hold, so none is released for them; each hold is released once.
    assert released and set(released) <= made and len(released) == len(set(released))
    assert hold_name(RUN, "report") not in released
    assert made == set(released)


def test_hold_names_stay_short_and_distinct() -> None:
    assert hold_name(RUN, "train") == "kfp:kubeflow-user/prep-train-7xk2p/train"
    a, b = hold_name(RUN, "x" * 300 + "a"), hold_name(RUN, "x" * 300 + "b")
    assert len(a) == len(b) == 256 and a != b


def test_upstream_outputs_wait_for_their_producer(own: Loader) -> None:
    s = Scheduler()
    accept(s, s.observe(RUN, plan_workflow(named(own("v2_running.yaml"))), now=0.0))
    done = named(own("v2_running.yaml"))
    for node in done["status"]["nodes"].values():
        if node["name"].endswith(".root.train") or node["name"].endswith(".root.train.executor"):
            node["phase"] = "Succeeded"
    plan = plan_workflow(done)
    assert plan.step("evaluate").state == "ready"
    got = {step: uris for step, uris, *_ in submits(s.observe(RUN, plan, now=1.0))}
    assert got["evaluate"] == ("s3://pipeline-root/prep-train/prep-train-7xk2p/train/model",)

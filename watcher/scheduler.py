"""Pure scheduling decisions of the watcher: plans in, preload/protect/cancel actions out.

The service feeds every observed plan (and deletions, submitted job ids, finished jobs) into one
:class:`Scheduler` and carries out the actions it returns, in order. Nothing here does I/O or
reads a clock: ``now`` is passed in, so the rules are tested on workflow files alone.

Rules:

* A run first seen already finished is ignored (history the watcher has nothing to do for).
* Each observation preloads the inputs of the steps within ``lookahead`` dependency hops of
  what runs now (:func:`upcoming`), nearest first, as load jobs whose priority falls with the
  distance. A URI is submitted at most once per run: a step whose inputs were already
  submitted by an earlier step only protects them, and a step that learns new inputs later
  gets one job for the new ones only. Upstream outputs (known once the producer's driver
  ran) are submitted when their step is ready, that is once the producer has finished.
* Data an upcoming step needs is protected by a hold named after the run and step, released
  when that step finishes. When the run ends (succeeded, failed, deleted) its unfinished jobs are
  cancelled and its remaining holds released with ``evict_first`` so the run's data goes first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._model import as_map, as_str
from .workflow import Plan, upcoming

FINISHED_STEP = frozenset({"succeeded", "skipped", "failed"})
FAILED_PHASES = frozenset({"Failed", "Error"})


@dataclass(frozen=True)
class RunRef:
    """Which workflow object a run is (what Kubernetes Events point at)."""

    namespace: str
    name: str
    uid: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> RunRef:
        """The reference of a workflow object (empty strings where the object says nothing)."""
        meta = as_map(obj.get("metadata"))
        return cls(
            as_str(meta.get("namespace")) or "", as_str(meta.get("name")) or "", as_str(meta.get("uid")) or ""
        )


MAX_HOLD_NAME = 256


def hold_name(run: RunRef, step: str) -> str:
    """The protect hold of one step of one run (long names shortened, kept unique by a digest)."""
    name = f"kfp:{run.key}/{step}"
    if len(name) <= MAX_HOLD_NAME:
        return name
    return name[: MAX_HOLD_NAME - 17] + "~" + hashlib.sha256(name.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Submit:
    """Start a load job for ``uris`` (what ``step`` will read), its blocks joining ``hold``."""

    run: RunRef
    step: str
    uris: tuple[str, ...]
    distance: int
    priority: int
    hold: str


@dataclass(frozen=True)
class Protect:
    """Add ``uris`` (submitted for another step) to ``hold``."""

    run: RunRef
    hold: str
    uris: tuple[str, ...]


@dataclass(frozen=True)
class Release:
    """Release ``hold``; with ``evict_first`` its data becomes the first eviction candidate."""

    run: RunRef
    hold: str
    evict_first: bool
    step: str = ""
    ran: bool = False
    """The step ran (its hold's reads are its reads: measured before the release)."""


@dataclass(frozen=True)
class Cancel:
    """Cancel a load job nothing needs any more."""

    run: RunRef
    job_id: str


@dataclass(frozen=True)
class Notify:
    """A Kubernetes Event on the workflow (``PreloadComplete``, ``PreloadFailed``...)."""

    run: RunRef
    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class StepStarted:
    """A step whose inputs were preloaded started; ``lead`` is seconds since they were all
    resident, None when they were not (yet) all resident: the preload came too late."""

    run: RunRef
    step: str
    lead: float | None
    jobs: tuple[str, ...] = ()
    """The load jobs that brought its inputs (to measure how much was resident at the start)."""


@dataclass(frozen=True)
class RunEnded:
    """The run ended (``outcome``: succeeded, failed or deleted) and was forgotten."""

    run: RunRef
    outcome: str


Action = Submit | Protect | Release | Cancel | Notify | StepStarted | RunEnded


@dataclass
class _Job:
    run: str
    step: str
    uris: tuple[str, ...]
    state: str | None = None  # final state once finished
    done_at: float | None = None


@dataclass
class _Run:
    ref: RunRef
    uri_job: dict[str, str | None] = field(default_factory=dict)  # None: submitted, id not known yet
    protected: dict[str, set[str]] = field(default_factory=dict)  # step -> URIs in its hold
    started: set[str] = field(default_factory=set)
    finished: set[str] = field(default_factory=set)
    released: set[str] = field(default_factory=set)
    jobs: list[str] = field(default_factory=list)


class Scheduler:
    """What to preload, protect, release and cancel, from what the cluster shows."""

    def __init__(self, lookahead: int = 2) -> None:
        if lookahead < 0:
            raise ValueError("lookahead must be 0 or more")
        self.lookahead = lookahead
        self._runs: dict[str, _Run] = {}
        self._jobs: dict[str, _Job] = {}

    @property
    def runs(self) -> list[RunRef]:
        """Runs being followed."""
        return [r.ref for r in self._runs.values()]

    def unfinished_jobs(self) -> list[str]:
        """Job ids submitted and not yet reported finished."""
        return [j for j, job in self._jobs.items() if job.state is None]

    def running_holds(self) -> list[tuple[RunRef, str, str]]:
        """(run, step, hold) of every step that runs now and has a hold."""
        return [
            (run.ref, step, hold_name(run.ref, step))
            for run in self._runs.values()
            for step in sorted(run.started - run.finished)
            if run.protected.get(step)
        ]

    def priority(self, distance: int) -> int:
        """Nearer steps first: a running step gets ``lookahead + 1``, the farthest 1."""
        return self.lookahead + 1 - distance

    # ---- inputs ---------------------------------------------------------------------------

    def observe(self, ref: RunRef, plan: Plan, now: float) -> list[Action]:
        """The actions a new or changed workflow calls for."""
        run = self._runs.get(ref.key)
        if plan.finished:
            if run is None:
                return []
            outcome = "failed" if plan.phase in FAILED_PHASES or _any_failed(plan) else "succeeded"
            return self._end(run, outcome)
        actions: list[Action] = []
        if run is None:
            run = self._runs[ref.key] = _Run(ref)
            # Steps already running when the watcher first sees the run: their start is history.
            run.started.update(s.name for s in plan.steps if s.state == "running")
        actions += self._transitions(run, plan, now)
        for distance, step in upcoming(plan, self.lookahead):
            # An upstream output is known as soon as its producer's driver ran, but it is only
            # complete once the producer finished: loading (or protecting, which resolves its
            # paths once) earlier would find nothing. So those wait until the step is ready.
            ready = step.state in ("ready", "running")
            uris = [i.uri for i in step.inputs if i.source != "upstream" or ready]
            actions += self._schedule(run, step.name, uris, distance)
        return actions

    def deleted(self, ref: RunRef) -> list[Action]:
        """The workflow object is gone: cancel and release everything of the run."""
        run = self._runs.get(ref.key)
        return [] if run is None else self._end(run, "deleted")

    def submitted(self, action: Submit, job_id: str) -> list[Action]:
        """The master accepted ``action`` as job ``job_id``."""
        run = self._runs.get(action.run.key)
        if run is None:  # the run ended while the job was being submitted
            return [Cancel(action.run, job_id)]
        self._jobs[job_id] = _Job(action.run.key, action.step, action.uris)
        run.jobs.append(job_id)
        for uri in action.uris:
            run.uri_job[uri] = job_id
        return []

    def submit_failed(self, action: Submit, error: str) -> list[Action]:
        """The master refused ``action``: forget its URIs (a later observation retries them)."""
        run = self._runs.get(action.run.key)
        if run is not None:
            for uri in action.uris:
                run.uri_job.pop(uri, None)
                run.protected.get(action.step, set()).discard(uri)
        return [
            Notify(action.run, "PreloadFailed", f"step {action.step}: preload not started: {error}", True)
        ]

    def job_finished(self, job_id: str, state: str, now: float, detail: str = "") -> list[Action]:
        """A job reached ``state`` (done, failed or cancelled)."""
        job = self._jobs.get(job_id)
        if job is None or job.state is not None:
            return []
        job.state, job.done_at = state, now
        run = self._runs.get(job.run)
        if run is None or state == "cancelled":
            return []
        tail = f" ({detail})" if detail else ""
        if state == "done":
            message = f"step {job.step}: {len(job.uris)} input(s) resident{tail}: {_uris_text(job.uris)}"
            return [Notify(run.ref, "PreloadComplete", message)]
        return [Notify(run.ref, "PreloadFailed", f"step {job.step}: preload {state}{tail}", True)]

    def forget_job(self, job_id: str) -> None:
        """Drop a finished job from memory (the service calls it once it handled the end)."""
        job = self._jobs.get(job_id)
        if job is not None and job.state is not None and job.run not in self._runs:
            del self._jobs[job_id]

    # ---- rules ----------------------------------------------------------------------------

    def _transitions(self, run: _Run, plan: Plan, now: float) -> list[Action]:
        actions: list[Action] = []
        for step in plan.steps:
            if step.state == "running" and step.name not in run.started:
                run.started.add(step.name)
                if run.protected.get(step.name):
                    jobs = tuple(
                        dict.fromkeys(j for u in run.protected[step.name] if (j := run.uri_job.get(u)))
                    )
                    actions.append(StepStarted(run.ref, step.name, self._lead(run, step.name, now), jobs))
            if step.state in FINISHED_STEP and step.name not in run.finished:
                run.finished.add(step.name)
                run.started.add(step.name)
                # Only holds that exist: a step without inputs never had one.
                if run.protected.get(step.name) and step.name not in run.released:
                    run.released.add(step.name)
                    ran = step.state != "skipped"
                    actions.append(Release(run.ref, hold_name(run.ref, step.name), False, step.name, ran))
        return actions

    def _schedule(self, run: _Run, step: str, uris: list[str], distance: int) -> list[Action]:
        if step in run.finished:
            return []
        held = run.protected.setdefault(step, set())
        new = [u for u in dict.fromkeys(uris) if u not in held]
        if not new:
            return []
        held.update(new)
        hold = hold_name(run.ref, step)
        fresh = tuple(u for u in new if u not in run.uri_job)
        elsewhere = tuple(u for u in new if u in run.uri_job)
        actions: list[Action] = []
        if elsewhere:
            actions.append(Protect(run.ref, hold, elsewhere))
        if fresh:
            for uri in fresh:
                run.uri_job[uri] = None
            actions.append(Submit(run.ref, step, fresh, distance, self.priority(distance), hold))
        return actions

    def _lead(self, run: _Run, step: str, now: float) -> float | None:
        latest = 0.0
        for uri in run.protected.get(step, ()):
            job = self._jobs.get(run.uri_job.get(uri) or "")
            if job is None or job.state != "done" or job.done_at is None:
                return None
            latest = max(latest, job.done_at)
        return now - latest

    def _end(self, run: _Run, outcome: str) -> list[Action]:
        del self._runs[run.ref.key]
        actions: list[Action] = [
            Cancel(run.ref, j)
            for j in run.jobs
            if (job := self._jobs.get(j)) is not None and job.state is None
        ]
        actions += [
            Release(run.ref, hold_name(run.ref, step), True, step, step in run.started)
            for step in run.protected
            if step not in run.released and run.protected[step]
        ]
        for j in run.jobs:
            job = self._jobs.get(j)
            if job is not None and job.state is not None:
                del self._jobs[j]
        actions.append(RunEnded(run.ref, outcome))
        return actions


def _any_failed(plan: Plan) -> bool:
    return any(s.state == "failed" for s in plan.steps) and plan.phase != "Succeeded"


def _uris_text(uris: tuple[str, ...], limit: int = 3) -> str:
    shown = ", ".join(uris[:limit])
    return shown + (f" and {len(uris) - limit} more" if len(uris) > limit else "")


def started_message(action: Submit, job_id: str) -> str:
    """The ``PreloadStarted`` Event text of a submitted job."""
    return (
        f"step {action.step}: preloading {len(action.uris)} input(s) as job {job_id} "
        f"(distance {action.distance}, priority {action.priority}): {_uris_text(action.uris)}"
    )

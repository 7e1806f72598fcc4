"""The watcher service: workflow events in, scheduler decisions carried out against the master.

One coroutine applies watch events in order (plans are computed and fed to the
:class:`Scheduler`); another polls the master for the jobs the scheduler waits on, and now and
then for the read counts of the running steps' holds. Both carry out the scheduler's actions:
load jobs, protect holds, cancels, Kubernetes Events, metrics. Before a step's hold is released,
its read counts are read one last time: the step's measured hit ratio (``hits``).
An error talking to the master or the API server is logged and counted, never fatal: the next
observation of the run tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

from ..client import CacheError, NoSuchJob
from .hits import Reads, RunHits, StepReads
from .kube import KubeApi, WatchEvent, WatchSettings, WorkflowWatch
from .metrics import WatcherMetrics
from .preloader import Preloader
from .scheduler import (
    Action,
    Cancel,
    Notify,
    Protect,
    Release,
    RunEnded,
    RunRef,
    Scheduler,
    StepStarted,
    Submit,
    started_message,
)
from .workflow import WorkflowError, plan_workflow

log = logging.getLogger(__name__)
TRANSIENT = (CacheError, aiohttp.ClientError, OSError, TimeoutError)
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # an RFC 1123 label


@dataclass(frozen=True)
class WatcherSettings:
    """Settings of ``pipecache watcher run``."""

    master: str
    """The master's URL."""
    lookahead: int = 2
    """Steps within this many dependency hops of what runs now are preloaded."""
    kubeconfig: str | None = None
    """A kubeconfig file; None: the pod's service account (in-cluster)."""
    host: str = "127.0.0.1"
    """Address of the metrics and health server."""
    metrics_port: int = 9102
    """Port of ``/metrics``, ``/healthz`` and ``/readyz``."""
    poll_interval: float = 0.25
    """Seconds between looks at the master's unfinished jobs."""
    hits_interval: float = 5.0
    """Seconds between looks at the read counts of the running steps' holds."""
    watch: WatchSettings = field(default_factory=WatchSettings)

    def validate(self) -> None:
        if not self.master.startswith(("http://", "https://")):
            raise ValueError(f"--master must be an http(s) URL, not {self.master!r}")
        if not 0 <= self.lookahead <= 100:
            raise ValueError("--lookahead must be between 0 and 100")
        if not 0 < self.hits_interval <= 3600:
            raise ValueError("--hits-interval must be over 0 and at most 3600 seconds")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError("--metrics-port must be a port number")
        for ns in self.watch.namespaces:
            if len(ns) > 63 or not _NAMESPACE.fullmatch(ns):
                raise ValueError(f"--namespace {ns!r} is not a Kubernetes namespace name")


ActionHook = Callable[[Action | StepReads, float], None]
KEEP_ENDED_RUNS = 100
"""Ended runs whose per-run series stay on /metrics (older ones are removed)."""


class Watcher:
    """Follows workflows and keeps the master preloading what their next steps read."""

    def __init__(
        self,
        settings: WatcherSettings,
        preloader: Preloader,
        kube: KubeApi,
        metrics: WatcherMetrics | None = None,
        *,
        hooks: Sequence[ActionHook] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.preloader = preloader
        self.kube = kube
        self.metrics = metrics or WatcherMetrics.create()
        self.scheduler = Scheduler(settings.lookahead)
        self.hooks = list(hooks)
        self.clock = clock
        self.resident: dict[str, list[int]] = {}
        """Per run: preloaded blocks resident at its steps' starts, and their total."""
        self.hits = RunHits()
        self._ended: deque[tuple[str, str]] = deque()
        """(namespace, name) of ended runs whose series are still exported, oldest first."""
        self.watches = [
            WorkflowWatch(
                kube,
                ns,
                on_relist=self.metrics.relists.inc,
                on_reconnect=lambda error: self.metrics.reconnects.labels(error).inc(),
            )
            for ns in (settings.watch.namespaces or (None,))
        ]

    @property
    def ready(self) -> bool:
        """Every watch has listed its workflows at least once."""
        return all(w.synced.is_set() for w in self.watches)

    async def run(self) -> None:
        """Watch and preload until cancelled.

        The watches, the job poller and the event loop run forever; if one of them ends, that is
        a bug: the others are stopped and its exception raised, so that the pod restarts rather
        than lingering half-alive behind a passing liveness probe.
        """
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue(maxsize=1024)
        tasks = [asyncio.create_task(self._feed(w, queue)) for w in self.watches]
        tasks += [asyncio.create_task(self._poll_jobs()), asyncio.create_task(self._consume(queue))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise RuntimeError("a watcher task ended")
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def _feed(self, watch: WorkflowWatch, queue: asyncio.Queue[WatchEvent]) -> None:
        async for event in watch.events():
            await queue.put(event)

    async def _consume(self, queue: asyncio.Queue[WatchEvent]) -> None:
        while True:
            await self.handle(await queue.get())

    async def handle(self, event: WatchEvent) -> None:
        """Apply one watch event."""
        ref = RunRef.of(event.obj)
        if event.type == "DELETED":
            await self.apply(self.scheduler.deleted(ref))
        else:
            try:
                # A big workflow (compressed nodes, long specs) takes a while to plan: keep the
                # loop free for the health probes and the job poller meanwhile.
                plan = await asyncio.to_thread(plan_workflow, event.obj)
            except WorkflowError as exc:
                self.metrics.plan_errors.inc()
                log.info("workflow %s cannot be planned: %s", ref.key, exc)
                return
            except Exception:  # a planner bug must not crash-loop the watcher on one object
                self.metrics.plan_errors.inc()
                log.exception("workflow %s: planning failed", ref.key)
                return
            await self.apply(self.scheduler.observe(ref, plan, self.clock()))
        self.metrics.runs.set(len(self.scheduler.runs))

    async def apply(self, actions: list[Action]) -> None:
        """Carry out the scheduler's actions, in order."""
        counts: dict[str, Reads] | None = None  # the holds' read counts, read once per batch
        for action in actions:
            if isinstance(action, Release) and action.ran:
                counts = await self._final_reads(action, counts)  # before the hold goes
            for hook in self.hooks:
                hook(action, self.clock())
            if isinstance(action, Submit):
                await self._submit(action)
            elif isinstance(action, Protect):
                await self._quietly("protect", self.preloader.protect(action.hold, action.uris))
            elif isinstance(action, Release):
                await self._quietly(
                    "release", self.preloader.release(action.hold, evict_first=action.evict_first)
                )
            elif isinstance(action, Cancel):
                if await self._quietly("cancel", self.preloader.cancel(action.job_id)):
                    self.metrics.jobs_cancelled.inc()
            elif isinstance(action, Notify):
                await self._event(action.run, action.reason, action.message, warning=action.warning)
            elif isinstance(action, StepStarted):
                await self._step_started(action)
            elif isinstance(action, RunEnded):
                self.metrics.runs_ended.labels(action.outcome).inc()
                self._run_end_log(action)
                self._retire(action.run)

    async def _step_started(self, action: StepStarted) -> None:
        if action.lead is None:
            self.metrics.late_steps.inc()
        else:
            self.metrics.lead_time.observe(max(action.lead, 0.0))
        resident = total = 0
        for job_id in action.jobs:
            try:
                status = await self.preloader.status(job_id)
            except TRANSIENT:
                return  # unknown: better no figure than a wrong one
            resident, total = resident + status.blocks_resident, total + status.blocks_total
        if total:
            self.metrics.resident_at_start.observe(resident / total)
            blocks = self.resident.setdefault(action.run.key, [0, 0])
            blocks[0], blocks[1] = blocks[0] + resident, blocks[1] + total

    def _run_end_log(self, action: RunEnded) -> None:
        resident, total = self.resident.pop(action.run.key, (0, 0))
        ratio = (
            f"{resident / total:.0%} of preloaded blocks resident at step starts" if total else "no preloads"
        )
        measured = self.hits.end(action.run.key)
        hits = f"{measured.hits}/{measured.reads} reads of held inputs were hits" if measured.reads else (
            "no reads of held inputs seen"
        )
        log.info("run %s ended (%s): %s; %s", action.run.key, action.outcome, ratio, hits)

    # ---- measured hit ratios ------------------------------------------------------------

    def _measured(self, run: RunRef, step: str, seen: Reads) -> Reads:
        """Feed a hold's latest counts in; export what changed. The step's figures."""
        gain = self.hits.update(run.key, step, seen)
        labels = (run.namespace, run.name)
        self.metrics.run_reads.labels(*labels).inc(gain.reads)
        self.metrics.run_hits.labels(*labels).inc(gain.hits)
        ratio = self.hits.run(run.key).ratio
        if ratio is not None:
            self.metrics.run_hit_ratio.labels(*labels).set(ratio)
        return self.hits.step(run.key, step)

    async def _final_reads(self, action: Release, counts: dict[str, Reads] | None) -> dict[str, Reads] | None:
        """The step's last figures, read just before its hold goes: a StepReads record.

        ``counts``: the holds' counts read for an earlier release of the same batch (a run's
        end releases every hold at once), else None. Returns the counts used.
        """
        if counts is None:
            try:
                counts = await self.preloader.hold_reads()
            except TRANSIENT as exc:
                log.warning("cannot read the hit counts of %s: %s", action.hold, exc)
                return None
        seen = counts.get(action.hold)
        if seen is None:
            return counts  # gone already (an admin released it, or the master forgot it)
        got = self._measured(action.run, action.step, seen)
        if got.ratio is not None:
            self.metrics.step_hit_ratio.observe(got.ratio)
        record = StepReads(action.run, action.step, action.hold, got.reads, got.hits, got.ratio)
        for hook in self.hooks:
            hook(record, self.clock())
        return counts

    async def _running_reads(self) -> None:
        """The latest figures of every running step (one look at the master's holds)."""
        running = self.scheduler.running_holds()
        if not running:
            return
        try:
            counts = await self.preloader.hold_reads()
        except TRANSIENT as exc:
            log.debug("cannot read hit counts: %s", exc)
            return
        followed = {r.key for r in self.scheduler.runs}  # a run may have ended meanwhile
        for run, step, hold in running:
            if hold in counts and run.key in followed:
                self._measured(run, step, counts[hold])

    def _retire(self, run: RunRef) -> None:
        """Keep the series of the last ``KEEP_ENDED_RUNS`` ended runs; drop older ones."""
        self._ended.append((run.namespace, run.name))
        while len(self._ended) > KEEP_ENDED_RUNS:
            labels = self._ended.popleft()
            for metric in (self.metrics.run_hit_ratio, self.metrics.run_reads, self.metrics.run_hits):
                with contextlib.suppress(KeyError):
                    metric.remove(*labels)

    async def _submit(self, action: Submit) -> None:
        try:
            job_id = await self.preloader.load(action.uris, priority=action.priority, hold=action.hold)
        except TRANSIENT as exc:
            self.metrics.jobs_failed.inc()
            log.warning("preload for %s step %s not started: %s", action.run.key, action.step, exc)
            await self.apply(self.scheduler.submit_failed(action, str(exc) or type(exc).__name__))
            return
        self.metrics.jobs_submitted.inc()
        log.info("%s step %s: job %s for %d input(s)", action.run.key, action.step, job_id, len(action.uris))
        follow = self.scheduler.submitted(action, job_id)
        await self._event(action.run, "PreloadStarted", started_message(action, job_id))
        await self.apply(follow)

    async def _poll_jobs(self) -> None:
        last_hits = 0.0
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            for job_id in self.scheduler.unfinished_jobs():
                await self._check_job(job_id)
            if time.monotonic() - last_hits >= self.settings.hits_interval:
                last_hits = time.monotonic()
                await self._running_reads()

    async def _check_job(self, job_id: str) -> None:
        try:
            status = await self.preloader.status(job_id)
        except NoSuchJob:
            # The master restarted and forgot it (jobs are not journaled yet).
            state, detail = "failed", "the master no longer knows this job"
        except TRANSIENT as exc:
            log.debug("cannot follow job %s: %s", job_id, exc)
            return
        else:
            if not status.finished:
                return
            state, detail = status.state, status.detail
        if state == "done":
            self.metrics.jobs_completed.inc()
        elif state != "cancelled":
            self.metrics.jobs_failed.inc()
        await self.apply(self.scheduler.job_finished(job_id, state, self.clock(), detail))
        self.scheduler.forget_job(job_id)

    async def _quietly(self, what: str, call: Awaitable[object]) -> bool:
        try:
            await call
        except TRANSIENT as exc:
            log.warning("%s failed: %s", what, exc)
            return False
        return True

    async def _event(self, run: RunRef, reason: str, message: str, *, warning: bool = False) -> None:
        involved = {"namespace": run.namespace, "name": run.name, "uid": run.uid}
        try:
            await self.kube.post_event(involved, reason, message, warning=warning)
        except Exception as exc:  # an Event is best effort: never stop preloading for one
            self.metrics.events.labels(reason, "error").inc()
            log.warning("cannot post %s Event on %s: %s", reason, run.key, exc)
            return
        self.metrics.events.labels(reason, "ok").inc()

"""Load jobs: which blocks to bring into the cache, where, and how far along each job is.

Pure state, sans-I/O like ``state.py``: no asyncio, no clock (``now`` is passed
in), no under-store. The master's handlers feed it listings, heartbeats and
worker failures, and send out what it returns.

Theory of operation
-------------------
1. A job starts in ``listing`` while the master lists its paths. ``plan``
   turns the objects found into one task per block, skipping blocks the
   cluster already holds (they count as resident at once), and gives each
   task to the block's owner: ``rank(...)[0]`` over the live workers weighted
   as the client weighs them, so the block lands where readers will look.
2. ``dispatch`` hands a worker its next tasks, higher-priority jobs first
   (then older jobs), never more than ``max_in_flight`` unreported tasks per
   worker: the rest waits in the job's queues.
3. A task is finished only when a heartbeat *reports* the block as added (on
   any worker): sending a task proves nothing. A job is ``done`` when every
   block is resident, ``failed`` when every block is resident or given up and
   at least one was given up.
4. A task not reported within ``task_timeout`` of being sent, or reported as
   failed by the worker, is retried after a backoff (doubling from
   ``retry_backoff``) on the owner among the workers live *then*; after
   ``max_attempts`` its object is marked failed with the last reason.
5. ``cancel`` stops dispatching; tasks already sent may still land (and are
   harmless), but the job stays ``cancelled``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..client.protocol import BlockRef, JobFailure, JobInfo, ObjectInfo, WorkerInfo
from ..tiering.blocks import block_count, block_extent
from ..tiering.placement import Candidate, rank

Locate = Callable[[Iterable[str]], dict[str, list[str]]]
"""Block ids -> workers holding them (``ClusterState.locate``)."""

THROUGHPUT_WINDOW = 10.0
"""Seconds of progress the throughput (and so the ETA) is measured over."""


@dataclass(slots=True, eq=False)
class _Task:
    job_id: str
    ref: BlockRef
    block_id: str
    length: int
    worker: str
    attempts: int = 0
    """How many times it was sent."""
    sent_at: float | None = None
    not_before: float = 0.0
    reason: str = ""


@dataclass(slots=True, eq=False)
class Job:
    """One load job: its paths, its block tasks and its progress counters."""

    id: str
    paths: list[str]
    priority: int
    created: float
    """Seconds on the manager's clock."""
    hold: str = ""
    """Name of the hold its blocks join (empty: none)."""
    state: str = "listing"
    updated: float = 0.0
    reason: str = ""
    objects_total: int = 0
    objects_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    blocks_total: int = 0
    blocks_resident: int = 0
    failed: dict[tuple[str, str], str] = field(default_factory=dict)
    """(bucket, key) -> why that object could not be loaded."""
    tasks: dict[str, _Task] = field(default_factory=dict)
    """Block id -> its task, for blocks neither resident nor given up."""
    queues: dict[str, deque[_Task]] = field(default_factory=dict)
    """Worker id -> tasks waiting to be sent to it."""
    retries: list[_Task] = field(default_factory=list)
    """Tasks waiting out their backoff."""
    remaining: dict[tuple[str, str], int] = field(default_factory=dict)
    """(bucket, key) -> its blocks neither resident nor given up."""
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    """(now, bytes_done) over the last THROUGHPUT_WINDOW seconds."""

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def throughput(self, now: float) -> float:
        """Bytes per second made resident over the window ending at ``now``."""
        self._sample(now)
        t0, b0 = self.samples[0]
        return (self.bytes_done - b0) / (now - t0) if now > t0 else 0.0

    def eta(self, now: float) -> float | None:
        """Seconds left at the current throughput; 0 when finished, None when unknown."""
        if self.finished:
            return 0.0
        rate = self.throughput(now)
        if rate <= 0 or self.state == "listing":
            return None
        return (self.bytes_total - self.bytes_done) / rate

    def _sample(self, now: float) -> None:
        if not self.samples or self.samples[-1] != (now, self.bytes_done):
            self.samples.append((now, self.bytes_done))
        while len(self.samples) > 1 and self.samples[1][0] <= now - THROUGHPUT_WINDOW:
            self.samples.popleft()


class JobManager:
    """Every load job, and the block tasks they dispatch to workers (see the module docstring)."""

    def __init__(
        self,
        *,
        max_in_flight: int = 1024,
        max_in_flight_bytes: int = 512 * 1024 * 1024,
        task_timeout: float = 30.0,
        max_attempts: int = 3,
        retry_backoff: float = 1.0,
    ) -> None:
        if min(max_in_flight, max_in_flight_bytes, task_timeout, max_attempts) <= 0 or retry_backoff < 0:
            raise ValueError("max_in_flight(_bytes), task_timeout and max_attempts must be > 0")
        # Tasks ride heartbeat replies, so a worker gets at most one window per beat:
        # the window bounds blocks (small objects) and bytes (big blocks) in flight.
        self.max_in_flight = max_in_flight
        self.max_in_flight_bytes = max_in_flight_bytes
        self.task_timeout = task_timeout
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self._jobs: dict[str, Job] = {}
        self._by_block: dict[str, list[str]] = {}
        """Block id -> ids of the unfinished jobs with a task for it."""
        self._in_flight: dict[str, dict[tuple[str, str], _Task]] = {}
        """Worker id -> its sent, unreported tasks, keyed by (job id, block id)."""
        self._seq = 0
        self._finished: list[Job] = []
        """Jobs finished since the last ``take_finished`` (for the journal)."""

    # ---- jobs -------------------------------------------------------------------

    def create(self, paths: list[str], priority: int, now: float) -> Job:
        """A new job in ``listing`` state."""
        self._seq += 1
        job = Job(f"job-{self._seq}", list(paths), priority, now, updated=now)
        job._sample(now)
        self._jobs[job.id] = job
        return job

    def restore(self, job: Job) -> None:
        """Put back a job known from before a restart (finished, or ``listing`` to be re-listed).

        New ids continue after the highest id seen.
        """
        self._jobs[job.id] = job
        num = job.id.removeprefix("job-")
        if num.isdigit():
            self._seq = max(self._seq, int(num))

    def take_finished(self) -> list[Job]:
        """Jobs that finished (done, failed or cancelled) since the last call."""
        out, self._finished = self._finished, []
        return out

    def prune(self, keep: int) -> list[str]:
        """Forget all but the ``keep`` newest finished jobs; the ids forgotten."""
        finished = [j for j in self.jobs() if j.finished]
        gone = [j.id for j in finished[: max(0, len(finished) - keep)]]
        for jid in gone:
            del self._jobs[jid]
        return gone

    @property
    def active(self) -> bool:
        """Whether some job is running (else heartbeats skip the job bookkeeping)."""
        return any(j.state == "running" for j in self._jobs.values())

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """Every job, oldest first."""
        return sorted(self._jobs.values(), key=lambda j: (j.created, j.id))

    def fail(self, job: Job, reason: str, now: float) -> None:
        """Give up a whole job (its listing failed)."""
        if job.finished:
            return
        self._drop_tasks(job)
        job.state, job.reason, job.updated = "failed", reason, now
        self._finished.append(job)

    def cancel(self, job: Job, now: float) -> None:
        """Stop dispatching the job's blocks; a finished job is left as it is."""
        if job.finished:
            return
        self._drop_tasks(job)
        job.state, job.updated = "cancelled", now
        self._finished.append(job)

    def plan(
        self, job: Job, objects: list[ObjectInfo], workers: list[WorkerInfo], locate: Locate, now: float
    ) -> dict[str, list[BlockRef]]:
        """Plan the listed ``objects``: one task per block not yet resident, queued on its owner.

        Returns the new tasks per worker (for inspection; ``dispatch`` sends them).
        Without live workers the tasks wait and are placed when one appears.
        """
        if job.state != "listing":
            return {}
        cands = [Candidate(w.worker_id, w.weight) for w in workers]
        # Overlapping paths may list an object twice: count and load it once.
        objects = list({(o.bucket, o.key): o for o in objects}.values())
        refs = [(o, i) for o in objects for i in range(block_count(o.size, o.block_size))]
        ids = [o.block_id(i) for o, i in refs]
        resident = locate(ids)
        plan: dict[str, list[BlockRef]] = {}
        for o in objects:
            k = (o.bucket, o.key)
            job.objects_total += 1
            job.bytes_total += o.size
            job.remaining[k] = 0
        for (o, i), bid in zip(refs, ids, strict=True):
            length = block_extent(i, o.size, o.block_size)[1]
            job.blocks_total += 1
            if bid in resident:
                job.blocks_resident += 1
                job.bytes_done += length
                continue
            ref = BlockRef(o.bucket, o.key, o.etag, i, o.size, o.block_size)
            owner = _owner(bid, cands)
            task = _Task(job.id, ref, bid, length, owner)
            job.tasks[bid] = task
            job.remaining[(o.bucket, o.key)] += 1
            job.queues.setdefault(owner, deque()).append(task)
            self._by_block.setdefault(bid, []).append(job.id)
            plan.setdefault(owner, []).append(ref)
        job.objects_done = sum(1 for n in job.remaining.values() if n == 0)
        job.state, job.updated = "running", now
        self._settle(job, now)
        return plan

    # ---- the heartbeat path ----------------------------------------------------------

    def report(self, added: Iterable[str], now: float) -> None:
        """Blocks a worker reported as added: resident for every job waiting on them."""
        by_block = self._by_block
        for bid in added:
            job_ids = by_block.pop(bid, None)
            if job_ids is None:
                continue
            for jid in job_ids:
                job = self._jobs[jid]
                task = job.tasks.pop(bid, None)
                if task is None:
                    continue
                self._unsend(task)
                self._resolve(job, task, now)
                job.blocks_resident += 1
                job.bytes_done += task.length
                self._settle(job, now)

    def failed(self, worker_id: str, failures: Iterable[tuple[str, str]], now: float) -> None:
        """Tasks the worker could not carry out: retry them later, or give up."""
        sent = self._in_flight.get(worker_id, {})
        for bid, reason in failures:
            for jid in list(self._by_block.get(bid, [])):
                task = sent.get((jid, bid))
                if task is not None:
                    self._retry(self._jobs[jid], task, reason or "the worker could not load it", now)

    def expire(self, workers: list[WorkerInfo], now: float) -> None:
        """Time out unreported tasks, re-place tasks queued on dead workers, end backoffs."""
        live = {w.worker_id for w in workers}
        cands = [Candidate(w.worker_id, w.weight) for w in workers]
        for wid, sent in list(self._in_flight.items()):
            for task in [t for t in sent.values() if t.sent_at is not None]:
                if wid not in live or now - task.sent_at >= self.task_timeout:  # type: ignore[operator]
                    why = "not reported resident in time" if wid in live else f"worker {wid} left"
                    self._retry(self._jobs[task.job_id], task, why, now)
        for job in self._jobs.values():
            if job.finished:
                continue
            for wid in [w for w in job.queues if w not in live and cands]:
                for task in job.queues.pop(wid):
                    task.worker = _owner(task.block_id, cands)
                    job.queues.setdefault(task.worker, deque()).append(task)
            due = [t for t in job.retries if t.not_before <= now]
            if due:
                job.retries = [t for t in job.retries if t.not_before > now]
                for task in due:
                    task.worker = _owner(task.block_id, cands) if cands else task.worker
                    job.queues.setdefault(task.worker, deque()).append(task)

    def dispatch(self, worker_id: str, now: float) -> list[BlockRef]:
        """The worker's next tasks, highest priority first, within its in-flight bound."""
        sent = self._in_flight.setdefault(worker_id, {})
        room = self.max_in_flight - len(sent)
        room_bytes = self.max_in_flight_bytes - sum(t.length for t in sent.values())
        out: list[BlockRef] = []
        order = sorted(
            (j for j in self._jobs.values() if j.state == "running" and j.queues.get(worker_id)),
            key=lambda j: (-j.priority, j.created, j.id),
        )
        for job in order:
            queue = job.queues[worker_id]
            while queue and room > 0 and (queue[0].length <= room_bytes or not sent):
                task = queue.popleft()
                if job.tasks.get(task.block_id) is not task:
                    continue  # reported resident while it waited for a retry
                task.attempts += 1
                task.sent_at = now
                sent[(job.id, task.block_id)] = task
                out.append(task.ref)
                room -= 1
                room_bytes -= task.length
            if not queue:
                del job.queues[worker_id]
        return out

    def in_flight(self, worker_id: str) -> int:
        """Tasks sent to the worker and not yet reported."""
        return len(self._in_flight.get(worker_id, {}))

    # ---- views ---------------------------------------------------------------------

    def info(self, job: Job, now: float, *, clock_offset: float = 0.0) -> JobInfo:
        """The job as the wire sees it; ``clock_offset`` turns the manager's clock into epoch seconds."""
        return JobInfo(
            id=job.id,
            state=job.state,
            paths=list(job.paths),
            priority=job.priority,
            objects_total=job.objects_total,
            objects_done=job.objects_done,
            bytes_total=job.bytes_total,
            bytes_done=job.bytes_done,
            blocks_total=job.blocks_total,
            blocks_resident=job.blocks_resident,
            failed=[JobFailure(b, k, r) for (b, k), r in sorted(job.failed.items())],
            created=job.created + clock_offset,
            updated=job.updated + clock_offset,
            throughput_bps=job.throughput(now),
            eta_seconds=job.eta(now),
            reason=job.reason,
        )

    # ---- internals ---------------------------------------------------------------------

    def _retry(self, job: Job, task: _Task, reason: str, now: float) -> None:
        self._unsend(task)
        if job.tasks.get(task.block_id) is not task:
            return  # already resident (or the job was dropped)
        task.sent_at, task.reason = None, reason
        if task.attempts >= self.max_attempts:
            job.tasks.pop(task.block_id, None)
            job.failed.setdefault(
                (task.ref.bucket, task.ref.key),
                f"block {task.ref.index}: {reason} (after {task.attempts} attempts)",
            )
            self._resolve(job, task, now)
            self._settle(job, now)
            return
        task.not_before = now + self.retry_backoff * 2.0 ** (task.attempts - 1)
        job.retries.append(task)

    def _resolve(self, job: Job, task: _Task, now: float) -> None:
        """The task is over (resident or given up): its object may be complete."""
        jobs = self._by_block.get(task.block_id)
        if jobs is not None and job.id in jobs:
            jobs.remove(job.id)
            if not jobs:
                del self._by_block[task.block_id]
        k = (task.ref.bucket, task.ref.key)
        job.remaining[k] -= 1
        if job.remaining[k] == 0 and k not in job.failed:
            job.objects_done += 1
        job.updated = now

    def _settle(self, job: Job, now: float) -> None:
        """Finish a running job once no task is left, and take a progress sample."""
        job._sample(now)
        if job.state == "running" and not job.tasks:
            job.state = "failed" if job.failed else "done"
            job.updated = now
            job.queues.clear()
            job.retries.clear()
            self._finished.append(job)

    def _unsend(self, task: _Task) -> None:
        sent = self._in_flight.get(task.worker)
        if sent is not None:
            sent.pop((task.job_id, task.block_id), None)

    def _drop_tasks(self, job: Job) -> None:
        for task in job.tasks.values():
            self._unsend(task)
            jobs = self._by_block.get(task.block_id)
            if jobs is not None and job.id in jobs:
                jobs.remove(job.id)
                if not jobs:
                    del self._by_block[task.block_id]
        job.tasks.clear()
        job.queues.clear()
        job.retries.clear()


def _owner(block_id: str, cands: list[Candidate]) -> str:
    """The block's owner, or "" while no worker is live (placed later by ``expire``)."""
    ranked = rank(block_id, cands)
    return ranked[0] if ranked else ""

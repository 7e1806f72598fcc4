"""The master's aiohttp application: thin handlers over ``ClusterState`` and ``ObjectCache``.

Handlers parse a ``client.protocol`` message, call the ``Master`` service (the
only place that awaits the under-store) or the pure state, and answer msgpack.
Typed errors become ``ErrorBody`` replies through ``client.web.error_middleware``.
Bytes never pass through here: clients place blocks themselves and read them
from workers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from ..client.protocol import (
    BUCKETS,
    CONFIG,
    FREE,
    HEAD_BUCKET,
    HEALTH,
    HEARTBEAT,
    HOLD_RELEASE,
    HOLDS,
    INVALIDATE,
    INVALIDATIONS,
    JOB_CANCEL,
    JOB_GET,
    JOBS,
    LIST,
    LOCATE,
    MAX_BODY,
    METRICS,
    MSGPACK,
    QUOTAS,
    REGISTER,
    STAT,
    TTL,
    WORKERS,
    BucketRequest,
    BucketsReply,
    Command,
    ConfigReply,
    FreeRequest,
    HeartbeatReply,
    HeartbeatRequest,
    HoldRequest,
    HoldsReply,
    InvalidateReply,
    InvalidateRequest,
    InvalidationsRequest,
    JobInfo,
    JobRequest,
    JobsReply,
    ListPage,
    ListRequest,
    LoadRequest,
    LoadTask,
    LocateReply,
    LocateRequest,
    Message,
    ObjectInfo,
    QuotaRequest,
    QuotasReply,
    RegisterReply,
    RegisterRequest,
    ReleaseRequest,
    StatRequest,
    TtlRequest,
    WorkerInfo,
    WorkersReply,
    pack,
    split_path,
)
from ..client.singleflight import SingleFlight
from ..client.ufs.base import UnderStore
from ..client.web import (
    cluster_token,
    error_middleware,
    guard,
    health_handler,
    metrics_handler,
    msgpack_response,
    read_message,
    token_middleware,
)
from ..tiering.errors import BadRequest, CacheError, NoSuchJob, NoSuchKey
from .durable import JOB_HISTORY, Durable, JobsProvider, created_body, finished_body
from .feed import InvalidationFeed
from .gauges import ClusterCollector
from .hold_service import HoldService
from .jobs import Job, JobManager
from .metadata import ObjectCache
from .quotas import QuotaService
from .settings import MasterSettings
from .state import ClusterState
from .status import render_status

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MasterMetrics:
    """Prometheus metrics on a per-app registry (several apps may share a process)."""

    registry: CollectorRegistry
    workers: Gauge
    blocks: Gauge
    requests: Counter
    metadata_cache: Counter
    ufs_requests: Counter
    expired: Counter

    @classmethod
    def create(cls, state: ClusterState) -> MasterMetrics:
        reg = CollectorRegistry()
        workers = Gauge("pipecache_master_workers", "Live workers.", registry=reg)
        workers.set_function(state.worker_count)
        blocks = Gauge("pipecache_master_blocks", "Distinct blocks held by workers.", registry=reg)
        blocks.set_function(state.block_count)
        reg.register(ClusterCollector(state))
        return cls(
            registry=reg,
            workers=workers,
            blocks=blocks,
            requests=Counter(
                "pipecache_master_requests", "Requests served.", ["route", "status"], registry=reg
            ),
            metadata_cache=Counter(
                "pipecache_master_metadata_cache",
                "Object metadata lookups.",
                ["result"],
                registry=reg,
            ),
            ufs_requests=Counter(
                "pipecache_ufs_requests", "Under-store requests made.", ["op"], registry=reg
            ),
            expired=Counter("pipecache_master_workers_expired", "Workers dropped for silence.", registry=reg),
        )


METADATA_WARMERS = 8
"""HEADs a load job keeps in flight to fetch its objects' full metadata."""


@dataclass(eq=False)
class Master:
    """The master's service layer: pure state plus the under-store, no HTTP."""

    settings: MasterSettings
    state: ClusterState
    objects: ObjectCache
    metrics: MasterMetrics
    ufs: UnderStore | None = None
    """Set at startup (or injected); the master owns and closes it only if it opened it."""
    stats: SingleFlight[tuple[str, str], ObjectInfo] = field(default_factory=SingleFlight)
    generation: int = 0
    """Bumped by every invalidation: a HEAD that started before one must not cache its answer."""
    jobs: JobManager = field(default_factory=JobManager)
    listings: set[asyncio.Task[None]] = field(default_factory=set)
    """Background listings of new load jobs (cancelled at shutdown)."""
    durable: Durable = field(default_factory=Durable)
    """What survives a restart (journaled under ``settings.data_dir``, if set)."""
    holds: HoldService = field(init=False)
    """Pins, protection, free and TTL (snapshot/restore: ``holds.registry``)."""
    quotas: QuotaService = field(init=False)
    """Tenant cache quotas and the workers' shares (snapshot/restore: ``quotas.book``)."""
    feed: InvalidationFeed = field(default_factory=InvalidationFeed)
    """Every invalidation, for gateways to follow (``INVALIDATIONS``)."""
    feed_changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set (and replaced) at each invalidation and at shutdown: wakes the long polls."""
    closing: bool = False

    def __post_init__(self) -> None:
        self.quotas = QuotaService(self.state)
        # Holds are journaled whole at each change: they change on operator and watcher
        # requests (a few a minute), not per read.
        self.holds = HoldService(self.state, self._objects_under, changed=lambda: self.durable.save("holds"))

    @property
    def store(self) -> UnderStore:
        if self.ufs is None:
            raise CacheError("the under-store is not open")
        return self.ufs

    async def stat(self, bucket: str, key: str, full: bool = False) -> ObjectInfo:
        """Object metadata from the cache, else from one shared under-store HEAD.

        ``full``: a cached listing entry (no content type or metadata) counts as a miss.
        """
        if not bucket or not key:
            raise BadRequest("stat needs a bucket and a key")
        found = self.objects.lookup(bucket, key, time.monotonic())
        if found is not None and not (full and found[0].partial):
            self.metrics.metadata_cache.labels("hit").inc()
            # Say how long it stays trusted here: a gateway reusing it stays within the mode's bound.
            return dataclasses.replace(found[0], fresh_for=found[1])
        self.metrics.metadata_cache.labels("miss").inc()
        return await self.stats.do((bucket, key), lambda: self._head(bucket, key))

    async def _head(self, bucket: str, key: str) -> ObjectInfo:
        self.metrics.ufs_requests.labels("head").inc()
        generation = self.generation
        info = await self.store.head(bucket, key)
        info = dataclasses.replace(info, block_size=self.settings.block_size)
        if generation == self.generation:  # else a write raced with the HEAD: do not cache
            self.objects.put(info, time.monotonic())
            if self.objects.enabled:
                return dataclasses.replace(info, fresh_for=self.objects.ttl)
        return info

    def invalidate(self, req: InvalidateRequest) -> int:
        """Forget cached metadata after a write; how many entries were dropped.

        Running HEADs for the key are detached (later stats start a new one)
        and, through ``generation``, will not store what they read.
        """
        self.generation += 1
        self.feed.add(req)
        self.feed_changed.set()
        self.feed_changed = asyncio.Event()
        if req.key:
            self.stats.forget((req.bucket, req.key))
            return int(self.objects.invalidate(req.bucket, req.key))
        for k in self.stats.keys():
            if k[0] == req.bucket and k[1].startswith(req.prefix):
                self.stats.forget(k)
        return self.objects.invalidate_prefix(req.bucket, req.prefix)

    async def list_objects(self, req: ListRequest) -> ListPage:
        """One listing page straight from the under-store; its entries warm the cache."""
        if not req.bucket:
            raise BadRequest("list needs a bucket")
        self.metrics.ufs_requests.labels("list").inc()
        generation = self.generation
        page = await self.store.list(
            req.bucket, req.prefix, req.delimiter, req.start_after, req.token, req.max_keys
        )
        now, bs = time.monotonic(), self.settings.block_size
        if generation != self.generation:
            return page  # a write raced with the listing: do not cache what it saw
        for e in page.entries:
            cached = self.objects.get(req.bucket, e.key, now)
            if cached is None or cached.etag != e.etag:  # keep a full entry of this version
                info = ObjectInfo(req.bucket, e.key, e.size, e.etag, e.last_modified, bs, partial=True)
                self.objects.put(info, now)
        return page

    async def buckets(self) -> BucketsReply:
        self.metrics.ufs_requests.labels("list_buckets").inc()
        return BucketsReply(await self.store.list_buckets())

    async def head_bucket(self, bucket: str) -> None:
        if not bucket:
            raise BadRequest("head_bucket needs a bucket")
        self.metrics.ufs_requests.labels("head_bucket").inc()
        await self.store.head_bucket(bucket)

    # ---- load jobs -------------------------------------------------------------

    def job_info(self, job: Job) -> JobInfo:
        # The manager keeps the monotonic clock; tell peers seconds since the epoch.
        now = time.monotonic()
        return self.jobs.info(job, now, clock_offset=time.time() - now)

    def get_job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NoSuchJob(f"no load job {job_id!r}")
        return job

    def start_job(self, req: LoadRequest) -> Job:
        """Create a job in ``listing`` state and list its paths in the background."""
        if req.hold:  # first: a refused hold starts no job
            self.holds.open_for_load(req.hold, req.paths)
        job = self.jobs.create(req.paths, req.priority, time.monotonic())
        job.hold = req.hold
        self.durable.record("jobs", "created", created_body(job, _epoch_offset()))
        self._list_in_background(job)
        return job

    def _list_in_background(self, job: Job) -> None:
        self._list_in_background_task(self._list_job(job), f"listing of {job.id}")

    def _list_in_background_task(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(guard(coro, name))
        self.listings.add(task)
        task.add_done_callback(self.listings.discard)

    async def _warm_metadata(self, job: Job, objects: list[ObjectInfo]) -> None:
        """Full metadata of a load job's objects into the cache, a few HEADs at a time."""
        todo = iter([i for i in objects if i.partial])

        async def warmer() -> None:  # a few of these share the list: no task per object
            for info in todo:
                if job.state == "cancelled":
                    return
                try:
                    await self.stat(info.bucket, info.key, full=True)
                except CacheError as exc:  # the block loads will tell the same story
                    log.debug("load job %s: no metadata for %s/%s: %s", job.id, info.bucket, info.key, exc)

        await asyncio.gather(*(warmer() for _ in range(METADATA_WARMERS)))

    def resume_jobs(self) -> None:
        """Re-list the jobs a restart interrupted (blocks already resident count once reported)."""
        for job in self.jobs.jobs():
            if job.state != "listing":
                continue
            log.info("load job %s: resumed after a restart", job.id)
            if job.hold:  # joins its journaled hold (or opens it again, unless the name is now taken)
                try:
                    self.holds.open_for_load(job.hold, job.paths)
                except BadRequest as exc:
                    log.warning("load job %s: hold %r not reopened: %s", job.id, job.hold, exc.message)
            self._list_in_background(job)

    def journal_finished(self) -> None:
        """Journal the jobs that finished since the last call (their final counters)."""
        finished = self.jobs.take_finished()
        for job in finished:
            self.durable.record("jobs", "finished", finished_body(job, _epoch_offset()))
        if finished:
            self.jobs.prune(JOB_HISTORY)  # the same bound as after a restart

    async def _list_job(self, job: Job) -> None:
        try:
            objects: list[ObjectInfo] = []
            for path in job.paths:
                objects.extend(await self._objects_under(*split_path(path)))
                if job.finished:  # cancelled while listing
                    return
        except CacheError as exc:
            self.jobs.fail(job, f"{exc.code}: {exc.message}", time.monotonic())
            self.journal_finished()
            return
        if job.hold:  # before planning: the first load tasks go out with their pins
            self.holds.join(job.hold, objects)
        self.jobs.plan(job, objects, self.state.workers(), self.state.locate, time.monotonic())
        self.journal_finished()  # all blocks may have been resident already
        if self.objects.enabled:
            # The listing gave sizes and ETags but not what a GetObject answers with
            # (content type, user metadata): fetch that too, so that the first read of a
            # preloaded object does not wait on the under-store for a HEAD.
            self._list_in_background_task(self._warm_metadata(job, objects), f"metadata of {job.id}")
        log.info(
            "load job %s: %d objects, %d blocks (%d already resident)",
            job.id,
            job.objects_total,
            job.blocks_total,
            job.blocks_resident,
        )

    async def _objects_under(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        """The object named ``prefix`` if there is one, else every object under it."""
        bs = self.settings.block_size
        if prefix and not prefix.endswith("/"):
            try:
                self.metrics.ufs_requests.labels("head").inc()
                info = await self.store.head(bucket, prefix)
                return [dataclasses.replace(info, block_size=bs)]
            except NoSuchKey:
                pass
        out: list[ObjectInfo] = []
        token: str | None = None
        while True:
            self.metrics.ufs_requests.labels("list").inc()
            page = await self.store.list(bucket, prefix, "", "", token, 1000)
            out.extend(
                ObjectInfo(bucket, e.key, e.size, e.etag, e.last_modified, bs, partial=True)
                for e in page.entries
            )
            if not page.truncated or not page.next_token:
                return out
            token = page.next_token

    def job_heartbeat(self, req: HeartbeatRequest, now: float) -> list[LoadTask]:
        """Feed a beat to the job manager; the worker's next load tasks."""
        jobs = self.jobs
        jobs.report(req.added, now)
        if req.load_failed:
            jobs.failed(req.worker_id, [(f.block_id, f.reason) for f in req.load_failed], now)
        if not jobs.active:
            return []
        jobs.expire(self.state.workers(), now)
        self.journal_finished()
        return [LoadTask.of(ref) for ref in jobs.dispatch(req.worker_id, now)]

    def sweep(self, now: float) -> list[str]:
        """Drop silent workers and expired metadata; return the dropped worker ids."""
        dead = self.state.expire(now)
        for wid in dead:
            log.warning("worker %s silent for over %.1fs: dropped", wid, self.state.worker_timeout)
        self.metrics.expired.inc(len(dead))
        self.holds.on_workers_gone(dead)
        self.quotas.on_workers_gone(dead)
        self.holds.sweep()
        self.objects.expire(now)
        return dead


MASTER = web.AppKey("master", Master)
_BIG_REPORT = 1 << 20
"""Registration bodies over this many bytes are decoded in a worker thread."""


# ---- handlers ------------------------------------------------------------------


def _reply(msg: Message) -> web.Response:
    # Annotated on purpose: `mypy master` alone cannot follow the package-dir
    # mapping to client/, and would see msgpack_response as returning Any.
    resp: web.Response = msgpack_response(msg)
    return resp


async def register(request: web.Request) -> web.Response:
    m = request.app[MASTER]
    if (request.content_length or 0) > _BIG_REPORT:
        # Decoding and checking a full report costs ~2 us per block id: take it
        # off the event loop so heartbeats keep flowing meanwhile.
        body = await request.read()
        req = await asyncio.to_thread(RegisterRequest.unpack, body)
    else:
        req = await read_message(request, RegisterRequest)
    m.state.register(req, time.monotonic())
    m.holds.on_register(req)
    m.quotas.on_register(req.worker_id)
    if m.jobs.active:  # a block a job waits for may arrive in a full report
        m.jobs.report(req.blocks, time.monotonic())
        m.journal_finished()
    log.info("worker %s registered at %s with %d blocks", req.worker_id, req.address, len(req.blocks))
    s = m.settings
    return _reply(RegisterReply(req.worker_id, s.heartbeat_interval, s.ufs))


async def heartbeat(request: web.Request) -> web.Response:
    m = request.app[MASTER]
    req = await read_message(request, HeartbeatRequest)
    now = time.monotonic()
    reply = m.state.heartbeat(req, now)
    loads = m.job_heartbeat(req, now)
    ids = [t.ref().block_id() for t in loads]
    pins = m.holds.on_heartbeat(req, ids)  # before the load command: blocks land pinned
    if loads or pins:
        load = [Command("load", ids, loads)] if loads else []
        reply = HeartbeatReply([*reply.commands, *pins, *load])
    return _reply(reply)


async def start_job(request: web.Request) -> web.Response:
    m = request.app[MASTER]
    req = await read_message(request, LoadRequest)
    return _reply(m.job_info(m.start_job(req)))


async def list_jobs(request: web.Request) -> web.Response:
    m = request.app[MASTER]
    return _reply(JobsReply([m.job_info(j) for j in m.jobs.jobs()]))


async def get_job(request: web.Request) -> web.Response:
    m = request.app[MASTER]
    req = await read_message(request, JobRequest)
    return _reply(m.job_info(m.get_job(req.job_id)))


async def cancel_job(request: web.Request) -> web.Response:
    m = request.app[MASTER]
    req = await read_message(request, JobRequest)
    job = m.get_job(req.job_id)
    m.jobs.cancel(job, time.monotonic())
    m.journal_finished()
    return _reply(m.job_info(job))


async def create_hold(request: web.Request) -> web.Response:
    req = await read_message(request, HoldRequest)
    return _reply(await request.app[MASTER].holds.hold(req))


async def list_holds(request: web.Request) -> web.Response:
    return _reply(HoldsReply(request.app[MASTER].holds.infos()))


async def release_hold(request: web.Request) -> web.Response:
    req = await read_message(request, ReleaseRequest)
    return _reply(request.app[MASTER].holds.release(req))


async def free(request: web.Request) -> web.Response:
    req = await read_message(request, FreeRequest)
    return _reply(await request.app[MASTER].holds.free(req))


async def set_ttl(request: web.Request) -> web.Response:
    req = await read_message(request, TtlRequest)
    return _reply(await request.app[MASTER].holds.ttl(req))


async def set_quotas(request: web.Request) -> web.Response:
    m = request.app[MASTER]
    req = await read_message(request, QuotaRequest)
    if m.quotas.update(req):  # gateways resend the same quotas: journal changes only
        m.durable.save("quotas")
    return _reply(QuotasReply(m.quotas.book.quotas()))


async def list_quotas(request: web.Request) -> web.Response:
    return _reply(QuotasReply(request.app[MASTER].quotas.book.quotas()))


def _workers(m: Master) -> list[WorkerInfo]:
    # The state keeps the monotonic clock; tell peers seconds since the epoch.
    offset = time.time() - time.monotonic()
    return [dataclasses.replace(w, last_seen=w.last_seen + offset) for w in m.state.workers()]


async def workers(request: web.Request) -> web.Response:
    return _reply(WorkersReply(_workers(request.app[MASTER])))


async def status_page(request: web.Request) -> web.Response:
    """GET /: the HTML status page for people (see master/status.py)."""
    m = request.app[MASTER]
    page = render_status(_workers(m), [m.job_info(j) for j in m.jobs.jobs()], now=time.time())
    return web.Response(text=page, content_type="text/html")


async def locate(request: web.Request) -> web.Response:
    req = await read_message(request, LocateRequest)
    return _reply(LocateReply(request.app[MASTER].state.locate(req.ids)))


async def stat(request: web.Request) -> web.Response:
    req = await read_message(request, StatRequest)
    return _reply(await request.app[MASTER].stat(req.bucket, req.key, req.full))


async def invalidate(request: web.Request) -> web.Response:
    req = await read_message(request, InvalidateRequest)
    return _reply(InvalidateReply(request.app[MASTER].invalidate(req)))


async def invalidations(request: web.Request) -> web.Response:
    """The invalidation feed, as a long poll: answers at the first invalidation after
    ``since``, or after ``wait`` seconds with none, or when the master shuts down."""
    req = await read_message(request, InvalidationsRequest)
    m = request.app[MASTER]
    reply = m.feed.since(req.since, req.epoch)
    if not reply.events and not reply.reset and req.wait > 0 and not m.closing:
        with suppress(TimeoutError):
            await asyncio.wait_for(m.feed_changed.wait(), req.wait)
        reply = m.feed.since(req.since, req.epoch)
    return _reply(reply)


async def _wake_polls(app: web.Application) -> None:
    m = app[MASTER]
    m.closing = True
    m.feed_changed.set()


async def config(request: web.Request) -> web.Response:
    s = request.app[MASTER].settings
    return _reply(ConfigReply(s.ufs, s.block_size, str(s.consistency_mode())))


async def list_objects(request: web.Request) -> web.Response:
    req = await read_message(request, ListRequest)
    return _reply(await request.app[MASTER].list_objects(req))


async def buckets(request: web.Request) -> web.Response:
    return _reply(await request.app[MASTER].buckets())


async def head_bucket(request: web.Request) -> web.Response:
    req = await read_message(request, BucketRequest)
    await request.app[MASTER].head_bucket(req.bucket)
    return web.Response(body=pack({}), content_type=MSGPACK)


@web.middleware
async def metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Count requests by route template (never the raw path: bounded labels) and status."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    status = "500"
    try:
        resp = await handler(request)
        status = str(resp.status)
        return resp
    except web.HTTPException as exc:
        status = str(exc.status)
        raise
    except asyncio.CancelledError:
        status = "499"  # the client went away
        raise
    finally:
        request.app[MASTER].metrics.requests.labels(route, status).inc()


# ---- lifecycle -------------------------------------------------------------------


async def _sweep_forever(m: Master) -> None:
    while True:
        await asyncio.sleep(m.settings.heartbeat_interval)
        try:
            m.sweep(time.monotonic())
        except Exception:  # one bad sweep must not end liveness tracking
            log.exception("liveness sweep failed")


def _understore_ctx(owned: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        m = app[MASTER]
        if owned:
            from ..client.ufs import open_understore

            m.ufs = open_understore(m.settings.ufs, m.settings.ufs_timeouts())
        try:
            yield
        finally:
            await m.stats.close()
            listings = list(m.listings)
            for t in listings:
                t.cancel()
            await asyncio.gather(*listings, return_exceptions=True)
            if owned and m.ufs is not None:
                await m.ufs.close()
                m.ufs = None

    return ctx


async def _durable_ctx(app: web.Application) -> AsyncIterator[None]:
    """Replay the journal (then resume interrupted jobs) at startup; checkpoint at shutdown."""
    m = app[MASTER]
    data_dir = m.settings.data_dir
    if data_dir is None:
        log.warning("no data dir: load jobs are kept in memory only and lost when the master stops")
    else:
        n = m.durable.open(data_dir)
        log.info("journal in %s: replayed %d records, %d jobs known", data_dir, n, len(m.jobs.jobs()))
        m.resume_jobs()
    try:
        yield
    finally:
        m.durable.close()


def _epoch_offset() -> float:
    """Seconds to add to the monotonic clock to get seconds since the epoch."""
    return time.time() - time.monotonic()


async def _sweep_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(guard(_sweep_forever(app[MASTER]), "liveness sweep"))
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def make_app(settings: MasterSettings, *, ufs: UnderStore | None = None) -> web.Application:
    """Build the master application.

    ``ufs`` is injectable for tests (the caller keeps ownership and closes it);
    otherwise ``open_understore(settings.ufs)`` runs at startup and the store
    is closed at shutdown.
    """
    settings.validate()
    state = ClusterState(settings.worker_timeout)
    master = Master(
        settings=settings,
        state=state,
        objects=ObjectCache(settings.consistency_mode().metadata_ttl, settings.metadata_max_entries),
        metrics=MasterMetrics.create(state),
        ufs=ufs,
        jobs=JobManager(max_in_flight=settings.load_window, max_in_flight_bytes=settings.load_window_bytes),
    )
    # A full block report of millions of ids is far over aiohttp's 1 MiB default.
    app = web.Application(
        middlewares=[token_middleware(cluster_token()), metrics_middleware, error_middleware],
        client_max_size=MAX_BODY,
    )
    app[MASTER] = master
    master.durable.register("jobs", JobsProvider(master.jobs, _epoch_offset))
    master.durable.register("holds", master.holds.registry)
    master.durable.register("quotas", master.quotas.book)
    app.cleanup_ctx.append(_understore_ctx(owned=ufs is None))
    app.cleanup_ctx.append(_durable_ctx)  # after the under-store: resumed jobs list it
    app.cleanup_ctx.append(_sweep_ctx)
    app.router.add_post(REGISTER, register)
    app.router.add_post(HEARTBEAT, heartbeat)
    app.router.add_get(WORKERS, workers)
    app.router.add_post(LOCATE, locate)
    app.router.add_post(STAT, stat)
    app.router.add_post(LIST, list_objects)
    app.router.add_get(BUCKETS, buckets)
    app.router.add_post(HEAD_BUCKET, head_bucket)
    app.router.add_post(INVALIDATE, invalidate)
    app.router.add_post(INVALIDATIONS, invalidations)
    app.on_shutdown.append(_wake_polls)
    app.router.add_get(CONFIG, config)
    app.router.add_post(JOBS, start_job)
    app.router.add_get(JOBS, list_jobs)
    app.router.add_post(JOB_GET, get_job)
    app.router.add_post(JOB_CANCEL, cancel_job)
    app.router.add_post(HOLDS, create_hold)
    app.router.add_get(HOLDS, list_holds)
    app.router.add_post(HOLD_RELEASE, release_hold)
    app.router.add_post(FREE, free)
    app.router.add_post(TTL, set_ttl)
    app.router.add_post(QUOTAS, set_quotas)
    app.router.add_get(QUOTAS, list_quotas)
    app.router.add_get("/", status_page)
    app.router.add_get(HEALTH, health_handler)
    app.router.add_get(METRICS, metrics_handler(master.metrics.registry))
    return app

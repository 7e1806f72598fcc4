"""The worker's aiohttp application: routes, keys and the lifecycle of its parts.

Everything with a lifetime is created in one cleanup context, in order, and
torn down in reverse: the executor, the tiered store (its constructor scans
the SSD folder, so it runs in the executor), the block service, the HTTP
session to the master and the guarded heartbeat task. aiohttp runs the
context before the server accepts connections, so handlers always find them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import aiohttp
from aiohttp import web

from ..client.protocol import BLOCKS, HEALTH, METRICS
from ..client.web import (
    cluster_token,
    error_middleware,
    guard,
    health_handler,
    metrics_handler,
    token_headers,
    token_middleware,
)
from ..tiering.store import TieredStore
from .blocks import BlockService
from .handlers import SERVICE, USE_SENDFILE, count_requests, get_block, head_block
from .heartbeat import Heartbeat
from .metrics import StoreCollector, WorkerMetrics
from .settings import WorkerSettings

log = logging.getLogger(__name__)

SETTINGS: web.AppKey[WorkerSettings] = web.AppKey("settings", WorkerSettings)
METRICS_KEY: web.AppKey[WorkerMetrics] = web.AppKey("metrics", WorkerMetrics)
HEARTBEAT_KEY: web.AppKey[Heartbeat] = web.AppKey("heartbeat", Heartbeat)
WORKER_ID: web.AppKey[str] = web.AppKey("worker_id", str)


def make_app(settings: WorkerSettings) -> web.Application:
    """The worker app for ``settings`` (validated here; ValueError if they cannot work)."""
    settings.validate()
    app = web.Application(middlewares=[token_middleware(cluster_token()), count_requests, error_middleware])
    metrics = WorkerMetrics.create()
    app[SETTINGS] = settings
    app[METRICS_KEY] = metrics
    app[USE_SENDFILE] = settings.sendfile
    metrics.registry.register(StoreCollector(lambda: _store_of(app)))
    app.cleanup_ctx.append(_worker_ctx)
    app.router.add_get(BLOCKS + "/{block_id}", get_block, name="get_block", allow_head=False)
    app.router.add_route("HEAD", BLOCKS + "/{block_id}", head_block, name="head_block")
    app.router.add_get(HEALTH, health_handler)
    app.router.add_get(METRICS, metrics_handler(metrics.registry))
    return app


def _store_of(app: web.Application) -> TieredStore | None:
    svc = app.get(SERVICE)
    return None if svc is None else svc.store


async def _worker_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(settings.io_threads, thread_name_prefix="pipecache-worker-io")
    try:
        # One hop: measure default budgets, read or create the id, scan the SSD folder.
        worker_id, store = await loop.run_in_executor(executor, _open_store, settings)
    except BaseException:
        executor.shutdown(wait=False)
        raise
    svc = BlockService(
        store,
        executor,
        app[METRICS_KEY],
        ufs_concurrency=settings.ufs_concurrency,
        ready_timeout=settings.ready_timeout,
        promote_on_hit=settings.promote_on_hit,
    )
    session = aiohttp.ClientSession(headers=token_headers(cluster_token()))
    heartbeat = Heartbeat(
        svc,
        session,
        master=settings.master,
        worker_id=worker_id,
        address=settings.advertise_url,
        timeout=settings.master_timeout,
        retry_max=settings.retry_max,
        ufs_timeouts=settings.ufs_timeouts(),
    )
    app[SERVICE] = svc
    app[WORKER_ID] = worker_id
    app[HEARTBEAT_KEY] = heartbeat
    task = asyncio.create_task(guard(heartbeat.run(), "heartbeat"), name="worker-heartbeat")
    log.info("worker %s: %s", worker_id, store.capacity())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await heartbeat.close()
        await svc.close()
        await session.close()
        await loop.run_in_executor(executor, store.close)
        # Fetches and promotions were cancelled above; wait for any thread still busy.
        await asyncio.to_thread(executor.shutdown, True)


def _open_store(settings: WorkerSettings) -> tuple[str, TieredStore]:
    worker_id = settings.resolve_worker_id()
    return worker_id, TieredStore(settings.store_config())

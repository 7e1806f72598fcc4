"""``pipecache watcher run``: the watcher, its master client and its metrics/health server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from aiohttp import web

from ..client import connect
from ..client.web import health_handler, metrics_handler
from .kube import KubeApi
from .preloader import ClientPreloader
from .service import ActionHook, Watcher, WatcherSettings

log = logging.getLogger(__name__)
WATCHER_KEY: web.AppKey[Watcher] = web.AppKey("watcher", Watcher)


async def _ready(request: web.Request) -> web.Response:
    # Ready once every watched namespace was listed: until then preloads may be missed.
    if request.app[WATCHER_KEY].ready:
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "listing workflows"}, status=503)


def make_app(watcher: Watcher) -> web.Application:
    """``/metrics``, ``/healthz`` (and ``/health``, like the other services) and ``/readyz``."""
    app = web.Application()
    app[WATCHER_KEY] = watcher
    app.router.add_get("/metrics", metrics_handler(watcher.metrics.registry))
    app.router.add_get("/healthz", health_handler)
    app.router.add_get("/health", health_handler)
    app.router.add_get("/readyz", _ready)
    return app


async def run_watcher(
    settings: WatcherSettings,
    *,
    hooks: Sequence[ActionHook] = (),
    stop: asyncio.Event | None = None,
    signals: bool = True,
) -> None:
    """Run until SIGINT/SIGTERM (with ``signals``) or ``stop`` is set.

    Raises ``KubeError`` when the Kubernetes configuration cannot be loaded.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM) if signals else ():
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    kube = await KubeApi.connect(settings.kubeconfig, settings.watch)
    try:
        async with connect(settings.master) as client:
            watcher = Watcher(settings, ClientPreloader(client), kube, hooks=hooks)
            runner = web.AppRunner(make_app(watcher), access_log=None, handle_signals=False)
            await runner.setup()
            try:
                await web.TCPSite(runner, settings.host, settings.metrics_port, reuse_address=True).start()
                log.info(
                    "watcher: master %s, namespaces %s, lookahead %d, metrics on http://%s:%d",
                    settings.master,
                    ", ".join(settings.watch.namespaces) or "all",
                    settings.lookahead,
                    settings.host,
                    settings.metrics_port,
                )
                task = asyncio.create_task(watcher.run())
                stopped = asyncio.create_task(stop.wait())
                await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
                for t in (task, stopped):
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t
            finally:
                await runner.cleanup()
    finally:
        await kube.close()

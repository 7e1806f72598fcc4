"""Server-side helpers every pipecache service shares (master, worker, gateway).

They live beside the wire contract so that all services speak it identically:
msgpack bodies parsed through ``protocol`` messages, typed errors answered as
``ErrorBody`` with the error's HTTP status, and a Prometheus ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..tiering.errors import BadRequest, CacheError
from .protocol import MAX_BODY, MSGPACK, ErrorBody, Message

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)


def msgpack_response(msg: Message, status: int = 200) -> web.Response:
    return web.Response(body=msg.pack(), status=status, content_type=MSGPACK)


def error_response(err: CacheError) -> web.Response:
    return msgpack_response(ErrorBody(err.code, err.message), status=err.http_status)


async def read_message(request: web.Request, cls: type[M]) -> M:
    """Read and validate a msgpack request body as ``cls``; BadRequest otherwise."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BadRequest("request body too large")
    body = await request.read()
    return cls.unpack(body)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer typed errors as msgpack ``ErrorBody``; never leak a traceback."""
    try:
        return await handler(request)
    except CacheError as err:
        return error_response(err)
    except web.HTTPException:
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(CacheError("internal error"))


def metrics_handler(registry: CollectorRegistry) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(_: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(registry))
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp

    return handle


async def health_handler(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def guard(coro: Coroutine[Any, Any, None], name: str) -> None:
    """Await a background coroutine, logging a crash instead of losing it in a dead task."""
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background task %s crashed", name)


def install_uvloop() -> None:
    """Use uvloop where it is installed: it roughly doubles small-request throughput."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(app: web.Application, host: str, port: int, *, name: str) -> None:
    """Run ``app`` on host:port until SIGINT/SIGTERM or cancellation, then clean up."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, backlog=1024)
    await site.start()
    log.info("%s listening on http://%s:%d", name, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await stop.wait()
    finally:
        await runner.cleanup()

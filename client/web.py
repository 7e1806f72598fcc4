"""Server-side helpers every pipecache service shares (master, worker, gateway).

They live beside the wire contract so that all services speak it identically:
msgpack bodies parsed through ``protocol`` messages, typed errors answered as
``ErrorBody`` with the error's HTTP status, and a Prometheus ``/metrics``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..tiering.errors import BadRequest, CacheError, Unauthorized
from .connguard import ConnectionLimits, GuardedServer
from .protocol import API, BLOCKS, MAX_BODY, MSGPACK, ErrorBody, Message
from .rpc import TOKEN_ENV, cluster_token, token_headers

__all__ = ["TOKEN_ENV", "cluster_token", "token_headers", "token_middleware"]

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


_GUARDED = (API + "/", BLOCKS + "/")
"""Paths that need the token: the control API and block data. Health, metrics and
the status page stay open (probes, Prometheus and people's browsers send no token)."""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_middleware(token: str | None) -> Middleware:
    """Refuse control and block requests without the cluster token (no token: allow all).

    Without it, anything that can reach a worker could read any cached block
    (bypassing the gateway's SigV4 and tenants) or plant commands on the master.
    """
    expected = f"Bearer {token}".encode() if token else b""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected and request.path.startswith(_GUARDED):
            got = request.headers.get("Authorization", "").encode("utf-8", "replace")
            if not hmac.compare_digest(got, expected):
                return error_response(Unauthorized("missing or wrong cluster token"))
        return await handler(request)

    return check


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


KEEPALIVE_TIMEOUT = 75.0
"""Seconds an idle keep-alive connection is kept (aiohttp's default, an hour, lets idle
clients pile up file descriptors)."""


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass(frozen=True, slots=True)
class Site:
    """One app to serve, where, and its name in logs."""

    app: web.Application
    host: str
    port: int
    name: str
    limits: ConnectionLimits | None = None
    """Guards of its connections (``connguard``; None: the default header deadline, no cap)."""
    reuse_port: bool = False
    """Listen with SO_REUSEPORT, beside other processes serving the same port."""


async def serve(
    app: web.Application, host: str, port: int, *, name: str, limits: ConnectionLimits | None = None
) -> None:
    """Run ``app`` on host:port until SIGINT/SIGTERM or cancellation, then clean up."""
    await serve_all([Site(app, host, port, name, limits)])


async def serve_all(sites: Sequence[Site], ready: Callable[[], None] | None = None) -> None:
    """Run several apps in this process, started in order and cleaned up in reverse.

    Every connection is guarded (``connguard``): a request head must arrive within
    ``limits.header_timeout``, and at most ``limits.max_connections`` are open at once.
    ``ready`` is called once every site listens.
    """
    runners: list[web.AppRunner] = []
    listeners: list[GuardedServer] = []
    try:
        for s in sites:
            runner = web.AppRunner(
                s.app, access_log=None, handle_signals=False, keepalive_timeout=KEEPALIVE_TIMEOUT
            )
            runners.append(runner)
            await runner.setup()
            listener = GuardedServer(runner, s.limits or ConnectionLimits())
            await listener.start(s.host, s.port, reuse_port=s.reuse_port)
            listeners.append(listener)
            log.info("%s listening on http://%s:%d", s.name, s.host, s.port)
            if s.name in ("master", "worker") and cluster_token() is None and not _loopback(s.host):
                log.warning(
                    "%s listens on %s without a cluster token: anything that reaches it can read "
                    "cached blocks and send commands; set %s on every pipecache process",
                    s.name,
                    s.host,
                    TOKEN_ENV,
                )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        if ready is not None:
            ready()
        await stop.wait()
    finally:
        for listener in reversed(listeners):
            await listener.stop()
        for runner in reversed(runners):
            await runner.cleanup()

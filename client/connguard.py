"""Connection guards for pipecache's HTTP servers: a header-read deadline and a connection cap.

aiohttp's server has neither. Its only clock on a connection is the keep-alive
timeout (75 s here), so a client that sends its request head a byte at a time
(slowloris), or opens connections and sends nothing, holds a file descriptor
each for that long, and enough of them exhaust the process's descriptors.

``GuardedServer`` listens itself and wraps each of aiohttp's request handlers
in a small protocol that

* closes the connection (after a bare ``408``) when a request head is not
  complete ``header_timeout`` seconds after its first byte came, or, for the
  first request, after the connection opened; an idle keep-alive connection
  between requests is left to aiohttp's keep-alive timeout;
* refuses a connection beyond ``max_connections`` open at once with a bare
  ``503 SlowDown``, which S3 SDKs back off from and retry.

It reads two private attributes of aiohttp's ``RequestHandler``: the count of
request heads parsed on the connection, and the future it awaits while idle
between requests. ``tests/unit/client/test_connguard.py`` fails if they go.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

_BUSY_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Too many connections</Message></Error>"
)
BUSY = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)
TOO_SLOW = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per process limits on the connections of one HTTP server."""

    header_timeout: float = 10.0
    """Seconds a request head may take from its first byte (or from the connection's
    opening, for the first request) until its blank line."""
    max_connections: int | None = None
    """Most connections open at once (None: no cap)."""

    def validate(self) -> None:
        if not self.header_timeout > 0:
            raise ValueError(f"header timeout must be > 0, got {self.header_timeout}")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError(f"max connections must be >= 1, got {self.max_connections}")


@dataclass(slots=True)
class GuardCounts:
    """What the guards did since the server started."""

    open: int = 0
    header_timeouts: int = 0
    refused: int = 0


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's handler inside, the deadline and the cap around it."""

    def __init__(self, inner: RequestHandler, limits: ConnectionLimits, counts: GuardCounts) -> None:
        self._inner = inner
        self._limits = limits
        self._counts = counts
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._admitted = False

    # ---- the deadline ----

    def _arm(self) -> None:
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._limits.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        self._counts.header_timeouts += 1
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(TOO_SLOW)
        self._inner.force_close()

    def _idle(self) -> bool:
        """Is the handler waiting for a new request (rather than serving one)?"""
        waiter = self._inner._waiter  # noqa: SLF001 (see the module docstring)
        return waiter is not None and not waiter.done()

    # ---- asyncio.Protocol, passed through ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        self._transport = transport
        cap = self._limits.max_connections
        if cap is not None and self._counts.open >= cap:
            self._counts.refused += 1
            transport.write(BUSY)
            transport.close()
            return
        self._admitted = True
        self._counts.open += 1
        self._inner.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if self._idle():
            self._arm()  # the first bytes of a new request head
        heads = self._inner._request_count  # noqa: SLF001
        self._inner.data_received(data)
        if self._inner._request_count != heads:  # noqa: SLF001
            self._disarm()

    def eof_received(self) -> bool | None:
        if self._admitted:
            self._inner.eof_received()
        return None  # close the transport (aiohttp's handler never keeps it half-open)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._admitted:
            self._admitted = False
            self._counts.open -= 1
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()


class GuardedServer:
    """``runner``'s aiohttp server listening on host:port, every connection guarded."""

    def __init__(self, runner: web.BaseRunner, limits: ConnectionLimits) -> None:
        limits.validate()
        self._runner = runner
        self.limits = limits
        self.counts = GuardCounts()
        self._server: asyncio.Server | None = None

    def _protocol(self) -> _Guarded:
        server = self._runner.server
        assert server is not None, "call runner.setup() first"
        return _Guarded(server(), self.limits, self.counts)

    async def start(self, host: str, port: int, *, backlog: int = 1024, reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, host, port, reuse_address=True, reuse_port=reuse_port or None, backlog=backlog
        )

    async def stop(self) -> None:
        """Stop listening (the runner's cleanup then closes the connections)."""
        if self._server is not None:
            self._server.close()
            self._server = None

"""Block GETs to workers over a lean keep-alive HTTP/1.1 client.

aiohttp's client parses every socket chunk through its StreamReader: on a
gateway streaming big objects that cost a fifth of the CPU. Block answers are
always framed by Content-Length, so this client reads the head into a small
buffer and then has the kernel copy the body straight into one preallocated
``bytearray`` (an ``asyncio.BufferedProtocol``): no parsing, no joins, no
further copies. Answers it does not handle lean (no Content-Length, chunked)
raise :class:`Unsupported`, and the caller asks again through aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import cast
from urllib.parse import urlencode, urlsplit

from .httphead import HEAD_MAX, BadHead, Head, head_end, parse_head, request_head
from .rpc import error_from_answer

ERROR_BODY_MAX = 1 << 20
"""Most bytes of an error answer read (a bigger one is not a worker's ErrorBody)."""
IDLE_SECONDS = 15.0
"""An idle pooled connection is closed after this long (aiohttp's keep-alive default)."""


class FetchError(Exception):
    """The connection failed, or the peer broke HTTP: another worker should be asked."""

    def __init__(self, message: str, *, before_answer: bool = False) -> None:
        super().__init__(message)
        self.before_answer = before_answer
        """No byte of the answer arrived (a reused connection the server had closed)."""


class Unsupported(Exception):
    """Not something this client reads (not http://, or a body without Content-Length)."""


def _raw_bytearray() -> Callable[[int], bytearray]:
    """``bytearray(n)`` without its memset, where the C API can be reached.

    Zeroing a 4 MiB body that the kernel overwrites anyway takes ~0.3 ms a block here.
    Safe: a body is handed out only once every one of its bytes was received.
    """
    try:
        import ctypes

        fn = ctypes.pythonapi.PyByteArray_FromStringAndSize
    except (ImportError, AttributeError):  # not CPython
        return bytearray
    fn.restype, fn.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_ssize_t]
    return cast(Callable[[int], bytearray], lambda n: fn(None, n))


_uninitialized = _raw_bytearray()


class _Conn(asyncio.BufferedProtocol):
    """One connection: at most one request in flight, the body read in place."""

    def __init__(self, on_lost: Callable[[_Conn], None]) -> None:
        self._on_lost = on_lost
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle: asyncio.TimerHandle | None = None
        self._head = bytearray(HEAD_MAX)
        self._filled = 0
        self._body: bytearray | None = None
        self._got = 0
        self._expect = 0
        self._answer: Head | None = None
        self._waiter: asyncio.Future[tuple[Head, bytearray]] | None = None
        self._stall = 0.0
        self._last_rx = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    # ---- asyncio callbacks ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._body is not None:
            return memoryview(self._body)[self._got :]
        if self._waiter is None or self._waiter.done() or self._filled >= HEAD_MAX:
            self._filled = 0  # unsolicited bytes: buffer_updated closes the connection
        return memoryview(self._head)[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._waiter is None or self._waiter.done():
            self._fail(FetchError("bytes received outside an answer"))
            return
        self._last_rx = self._loop.time()
        if self._body is not None:
            self._got += nbytes
            if self._got == len(self._body):
                self._finish()
            return
        before, self._filled = self._filled, self._filled + nbytes
        end = head_end(self._head, self._filled, before)
        if end < 0:
            if self._filled >= HEAD_MAX:
                self._fail(FetchError(f"response head over {HEAD_MAX} bytes"))
            return
        try:
            head = parse_head(bytes(self._head[:end]))
        except BadHead as exc:
            self._fail(FetchError(str(exc)))
            return
        self._start_body(head, self._head[end : self._filled])

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        started = self._filled > 0 or self._body is not None
        where = "mid-answer" if started else "before answering"
        self._fail(FetchError(f"connection closed {where}: {exc or 'EOF'}", before_answer=not started))
        self._on_lost(self)

    # ---- one exchange ----

    async def exchange(self, request: bytes, expect: int, stall: float) -> tuple[Head, bytearray]:
        """Send ``request``; the head and body of the answer (a 2xx body must be ``expect`` bytes)."""
        assert self.transport is not None and self._waiter is None
        self._waiter = self._loop.create_future()
        self._expect, self._stall = expect, stall
        self._last_rx = self._loop.time()
        self._watchdog = self._loop.call_later(stall, self._check_stall)
        self.transport.write(request)
        try:
            return await self._waiter
        finally:
            self._reset()

    def _start_body(self, head: Head, early: bytearray) -> None:
        if head.length is None or head.transfer_encoded:
            self._fail(Unsupported(f"HTTP {head.status} answer without Content-Length"))
            return
        if 200 <= head.status < 300 and head.length != self._expect:
            self._fail(FetchError(f"Content-Length {head.length}, expected {self._expect}"))
            return
        if head.status >= 300 and head.length > ERROR_BODY_MAX:
            self._fail(FetchError(f"HTTP {head.status} with a {head.length}-byte body"))
            return
        if len(early) > head.length:
            self._fail(FetchError("bytes past the end of the answer"))
            return
        self._answer, self._body = head, _uninitialized(head.length)
        self._body[: len(early)] = early  # the few body bytes that came with the head
        self._got = len(early)
        if self._got == head.length:
            self._finish()

    def _finish(self) -> None:
        assert self._waiter is not None and self._answer is not None and self._body is not None
        if not self._waiter.done():
            self._waiter.set_result((self._answer, self._body))
        self._body = None  # later bytes are unsolicited

    def _check_stall(self) -> None:
        quiet = self._loop.time() - self._last_rx
        if quiet >= self._stall:
            self._fail(TimeoutError(f"no byte from the worker for {self._stall:g}s"))
        else:
            self._watchdog = self._loop.call_later(self._stall - quiet, self._check_stall)

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def _reset(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._waiter, self._answer, self._body = None, None, None
        self._filled = self._got = 0

    @property
    def usable(self) -> bool:
        """Open, and not already closing (a FIN seen, connection_lost still to come)."""
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class BlockFetcher:
    """A bounded pool of keep-alive connections per worker address, for block GETs."""

    def __init__(self, limit: int, headers: Mapping[str, str]) -> None:
        self._limit = max(1, limit)
        self._slots = asyncio.Semaphore(self._limit)
        self._headers = dict(headers)
        self._idle: dict[str, list[_Conn]] = {}
        self._open: set[_Conn] = set()
        self._origins: dict[str, tuple[str, int, str, str]] = {}
        self._unframed: set[str] = set()
        """Addresses that answered without Content-Length: read through aiohttp from then on,
        instead of asking twice for every block."""

    async def get(
        self,
        address: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        expect: int,
        *,
        total: float,
        stall: float,
    ) -> bytearray:
        """The ``expect``-byte body of ``GET address+path?query``, or the typed error it answers.

        FetchError/TimeoutError: ask another worker. Unsupported: ask through aiohttp.
        """
        host, port, prefix, netloc = self._origin(address)
        if address in self._unframed:
            raise Unsupported(f"{address} answers without Content-Length")
        target = f"{prefix}{path}?{urlencode(query)}"
        request = request_head(target, {"Host": netloc, **self._headers, **headers})
        try:
            async with asyncio.timeout(total), self._slots:
                head, body = await self._exchange(address, host, port, request, expect, stall)
        except Unsupported:
            self._unframed.add(address)
            raise
        if head.status >= 300:
            raise error_from_answer(head.status, head.content_type, bytes(body), f"{host}:{port}")
        return body

    async def _exchange(
        self, address: str, host: str, port: int, request: bytes, expect: int, stall: float
    ) -> tuple[Head, bytearray]:
        for retry in (False, True):
            conn = self._idle_conn(address) if not retry else None
            reused = conn is not None
            if conn is None:
                conn = await self._connect(host, port, stall)
            done = False
            try:
                head, body = await conn.exchange(request, expect, stall)
                done = True
            except FetchError as exc:
                # A kept-alive connection the server closed while idle: aiohttp retries that too.
                if reused and exc.before_answer and not retry:
                    continue
                raise
            finally:
                if done and not head.close:
                    self._park(address, conn)
                else:  # failed, cancelled, or the server said close: never reuse
                    self._drop(conn)
            return head, body
        raise AssertionError("unreachable")

    def _origin(self, address: str) -> tuple[str, int, str, str]:
        origin = self._origins.get(address)
        if origin is None:
            parts = urlsplit(address)
            if parts.scheme != "http" or not parts.hostname:
                raise Unsupported(f"not a plain http:// address: {address[:100]!r}")
            origin = (parts.hostname, parts.port or 80, parts.path.rstrip("/"), parts.netloc)
            self._origins[address] = origin
        return origin

    async def _connect(self, host: str, port: int, timeout: float) -> _Conn:
        if len(self._open) >= self._limit:
            self._close_an_idle()
        loop = asyncio.get_running_loop()
        try:
            # Bounded on its own: a worker whose SYNs go unanswered (a dead node) must not
            # hold the read for the whole total timeout before the next worker is asked.
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(lambda: _Conn(self._forget), host, port)
        except TimeoutError:
            why = f"cannot connect to {host}:{port}: no answer in {timeout:g} s"
            raise FetchError(why, before_answer=True) from None
        except OSError as exc:
            raise FetchError(f"cannot connect to {host}:{port}: {exc}", before_answer=True) from exc
        self._open.add(conn)
        return conn

    def _idle_conn(self, address: str) -> _Conn | None:
        stack = self._idle.get(address)
        while stack:
            conn = stack.pop()  # the most recently used: least likely closed by the server
            if conn.idle is not None:
                conn.idle.cancel()
                conn.idle = None
            if conn.usable:
                return conn
            self._drop(conn)
        return None

    def _park(self, address: str, conn: _Conn) -> None:
        self._idle.setdefault(address, []).append(conn)
        conn.idle = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._drop, conn)

    def _close_an_idle(self) -> None:
        # At the cap with a slot held: some connection is idle (another address's).
        stacks = [s for s in self._idle.values() if s]
        if stacks:
            self._drop(stacks[0][0])  # the bottom of a stack: its longest idle

    def _drop(self, conn: _Conn) -> None:
        conn.close()
        self._forget(conn)

    def _forget(self, conn: _Conn) -> None:
        """Drop every reference to ``conn`` (closed by us, or lost)."""
        if conn.idle is not None:
            conn.idle.cancel()
            conn.idle = None
        self._open.discard(conn)
        for stack in self._idle.values():
            with contextlib.suppress(ValueError):
                stack.remove(conn)

    @property
    def connections(self) -> int:
        """Connections open now, busy or idle."""
        return len(self._open)

    def close(self) -> None:
        """Close every connection (requests in flight fail with FetchError)."""
        for conn in list(self._open):
            self._drop(conn)
        self._idle.clear()

"""A TCP proxy on loopback that passes, refuses, stalls or cuts connections, for fault tests.

It runs its own event loop in a thread, so synchronous tests (boto3) and
async ones can both steer it. Switching modes resets the open connections, so
pooled keep-alive connections cannot carry an old mode over. In ``cut`` mode
each connection counts the bytes it has sent downstream (towards the proxy's
client) and is reset after ``cut_after``; in ``stall`` mode it goes quiet
there instead (``cut_after`` 0: it answers nothing at all, not even headers).
``times`` limits the fault to that many new connections; later ones pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["pass", "refuse", "stall", "cut", "slowdown"]

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


@dataclass(eq=False)
class FaultProxy:
    upstream_host: str
    upstream_port: int
    mode: Mode = "pass"
    cut_after: int = 0
    """In ``cut`` and ``stall`` modes: bytes a connection sends downstream before the fault."""
    times: int | None = None
    """How many more new connections get the fault (None: all of them)."""
    port: int = 0
    accepted: int = 0
    cuts: int = 0
    stalls: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.base_events.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            loop.run_until_complete(self._server.wait_closed())
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def set(self, mode: Mode, cut_after: int = 0, times: int | None = None) -> None:
        """Switch mode, resetting every open connection (each keeps the mode it was accepted in)."""

        def apply() -> None:
            self.mode, self.cut_after, self.times = mode, cut_after, times
            for w in list(self._writers):
                _reset(w)

        assert self._loop is not None
        done = threading.Event()
        self._loop.call_soon_threadsafe(lambda: (apply(), done.set()))
        done.wait(5)

    def _next_mode(self) -> Mode:
        if self.times is None:
            return self.mode
        if self.times <= 0:
            return "pass"
        self.times -= 1
        return self.mode

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        mode = self._next_mode()
        if mode == "refuse":
            _reset(writer)
            return
        self._writers.add(writer)
        try:
            if mode == "stall" and self.cut_after == 0:
                self.stalls += 1
                await reader.read()  # swallow the request, answer nothing, until the peer leaves
                return
            if mode == "slowdown":
                await _answer_slow_down(reader, writer)
                return
            up_r, up_w = await asyncio.open_connection(self.upstream_host, self.upstream_port)
            self._writers.add(up_w)
            client_gone = asyncio.Event()  # a stalled answer is held until then

            async def upstream() -> None:
                try:
                    await self._pipe(reader, up_w, "pass", client_gone)
                finally:
                    client_gone.set()

            try:
                await asyncio.gather(upstream(), self._pipe(up_r, writer, mode, client_gone))
            finally:
                up_w.close()  # graceful: a reset would drop bytes still queued in the kernel
                self._writers.discard(up_w)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, mode: Mode, client_gone: asyncio.Event
    ) -> None:
        """Copy ``src`` to ``dst``, applying ``mode`` (only the downstream pipe has a fault)."""
        sent = 0
        try:
            while data := await src.read(65536):
                if mode in ("cut", "stall"):
                    room = self.cut_after - sent
                    if room <= 0 or len(data) >= room:
                        dst.write(data[: max(room, 0)])
                        with contextlib.suppress(ConnectionError):
                            await dst.drain()
                        if mode == "stall":
                            self.stalls += 1
                            await client_gone.wait()  # hold the connection open, send nothing more
                        else:
                            self.cuts += 1
                        _reset(dst)
                        return
                dst.write(data)
                sent += len(data)
                await dst.drain()
            # A clean end passes on as a clean end (FIN): a reset here would make the
            # kernel drop bytes still in the send buffer, a fault nobody asked for.
            if dst.can_write_eof():
                dst.write_eof()
            return
        except (ConnectionError, OSError):
            pass
        _reset(dst)


async def _answer_slow_down(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every HTTP request on the connection with S3's 503 SlowDown (throttling)."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length:
            await reader.readexactly(length)
        body = b"" if head.startswith(b"HEAD ") else SLOW_DOWN  # HEAD answers carry no body
        writer.write(
            b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(SLOW_DOWN), body)
        )
        await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0): the peer sees a reset, as when a process dies."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.transport.abort()

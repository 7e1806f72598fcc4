"""The lean block fetcher against a loopback peer that answers with bytes each test scripts.

No HTTP library on the peer side: every byte it sends is written here, so broken
framing, stalls, early closes and error answers are exactly what the test says.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from pipecache.client import ClientOptions
from pipecache.client.blockfetch import BlockFetcher, FetchError, Unsupported
from pipecache.client.client import Client
from pipecache.client.protocol import MSGPACK, BlockRef, ErrorBody
from pipecache.tiering.blocks import BlockSpan
from pipecache.tiering.errors import BlockNotFound, CacheError

Handler = Callable[["Peer", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Peer:
    """A loopback TCP server: counts connections, keeps each request head it read."""

    handler: Handler
    address: str = ""
    accepted: int = 0
    requests: list[bytes] = field(default_factory=list)
    closes: int = 0
    """Connections the client closed (EOF or reset while waiting for a request)."""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def read_request(self, reader: asyncio.StreamReader) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closes += 1
            return False
        self.requests.append(head)
        return True

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bool:
        """Read a request and send ``data``; False if the client closed instead."""
        if not await self.read_request(reader):
            return False
        writer.write(data)
        await writer.drain()
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)  # type: ignore[arg-type]
        try:
            await self.handler(self, reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[Peer]:
    peer = Peer(handler)
    server = await asyncio.start_server(peer._serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peer.address = f"http://127.0.0.1:{port}"
    try:
        yield peer
    finally:
        server.close()
        for task in peer.tasks:  # Python 3.11's wait_closed does not wait for handlers
            task.cancel()
        await asyncio.gather(*peer.tasks, return_exceptions=True)
        await server.wait_closed()


def ok(body: bytes, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    return head + b"".join(extra) + b"Content-Length: %d\r\n\r\n" % len(body) + body


BODY = bytes(range(256)) * 1024  # 256 KiB: several socket reads


async def keep_alive(peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A well-behaved worker: one whole answer per request, for as long as asked."""
    while await peer.answer(reader, writer, ok(BODY)):
        pass


def fetcher(limit: int = 8) -> BlockFetcher:
    return BlockFetcher(limit, {"Authorization": "Bearer s3cret"})


async def get(f: BlockFetcher, peer: Peer, expect: int = len(BODY), stall: float = 5.0) -> bytearray:
    query = {"b": "bkt", "k": "a b+c/ü&=", "i": "0"}
    return await f.get(peer.address, "/blocks/ab12", query, {}, expect, total=10.0, stall=stall)


async def test_keep_alive_reuses_one_connection_and_sends_the_request() -> None:
    async with serve(keep_alive) as peer:
        f = fetcher()
        for _ in range(3):
            body = await get(f, peer)
            assert isinstance(body, bytearray) and body == BODY
        assert peer.accepted == 1 and len(peer.requests) == 3
        host = peer.address.removeprefix("http://")
        assert peer.requests[0] == (
            b"GET /blocks/ab12?b=bkt&k=a+b%2Bc%2F%C3%BC%26%3D&i=0 HTTP/1.1\r\n"
            b"Host: " + host.encode() + b"\r\nAuthorization: Bearer s3cret\r\n\r\n"
        )
        f.close()
        await asyncio.sleep(0.05)
        assert peer.closes == 1  # close() closed the pooled connection


async def test_the_limit_bounds_connections() -> None:
    async with serve(keep_alive) as peer:
        f = fetcher(limit=1)
        bodies = await asyncio.gather(*(get(f, peer) for _ in range(4)))
        assert all(b == BODY for b in bodies)
        assert peer.accepted == 1
        f.close()


async def test_short_body_then_close_is_a_connection_error() -> None:
    async def short(peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await peer.read_request(reader)
        writer.write(ok(BODY)[: -len(BODY) // 2])

    async with serve(short) as peer:
        f = fetcher()
        with pytest.raises(FetchError, match="mid-answer"):
            await get(f, peer)
        f.close()


async def test_stall_mid_body_times_out_after_the_stall_timeout() -> None:
    async def stall(peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await peer.read_request(reader)
        writer.write(ok(BODY)[:1000])
        await asyncio.sleep(30)

    async with serve(stall) as peer:
        f = fetcher()
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="no byte"):
            await get(f, peer, stall=0.3)
        assert 0.25 < time.monotonic() - t0 < 3.0
        f.close()


async def test_slow_but_moving_body_is_not_a_stall() -> None:
    async def trickle(peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await peer.read_request(reader)
        data = ok(BODY[:1000])
        for i in range(0, len(data), 200):
            writer.write(data[i : i + 200])
            await asyncio.sleep(0.1)

    async with serve(trickle) as peer:
        f = fetcher()
        assert await get(f, peer, expect=1000, stall=0.3) == BODY[:1000]
        f.close()


async def test_idle_connection_closed_by_the_server_is_retried_once() -> None:
    async def one_per_conn(peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Answers one request, then reads the next and closes without a byte,
        # as a server whose keep-alive timeout fired just as the request came.
        await peer.answer(reader, writer, ok(BODY))
        await peer.read_request(reader)

    async with serve(one_per_conn) as peer:
        f = fetcher()
        assert await get(f, peer) == BODY
        assert await get(f, peer) == BODY
        assert peer.accepted == 2 and len(peer.requests) == 3
        f.close()


async def test_fresh_connection_closed_before_answering_is_not_retried() -> None:
    async def mute(peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await peer.read_request(reader)

    async with serve(mute) as peer:
        f = fetcher()
        with pytest.raises(FetchError, match="before answering"):
            await get(f, peer)
        assert peer.accepted == 1
        f.close()


async def test_cancel_mid_body_closes_that_connection() -> None:
    first = asyncio.Event()

    async def half_then_whole(peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await peer.read_request(reader)
        if peer.accepted == 1:
            writer.write(ok(BODY)[:5000])
            first.set()
            await peer.read_request(reader)  # the client must close this one: EOF
            return
        writer.write(ok(BODY))
        await writer.drain()
        await peer.read_request(reader)

    async with serve(half_then_whole) as peer:
        f = fetcher()
        task = asyncio.create_task(get(f, peer))
        await first.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await get(f, peer) == BODY
        assert peer.accepted == 2 and peer.closes == 1
        f.close()


async def test_error_answer_becomes_the_typed_error_and_keeps_the_connection() -> None:
    body = ErrorBody("BlockNotFound", "block ab12 is not here").pack()

    async def error_then_ok(peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await peer.read_request(reader)
        head = b"HTTP/1.1 404 Not Found\r\nContent-Type: %s; charset=utf-8\r\n" % MSGPACK.encode()
        writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await keep_alive(peer, reader, writer)

    async with serve(error_then_ok) as peer:
        f = fetcher()
        with pytest.raises(BlockNotFound, match="not here"):
            await get(f, peer)
        assert await get(f, peer) == BODY
        assert peer.accepted == 1
        f.close()


async def test_error_answer_without_error_body_is_a_plain_cache_error() -> None:
    async def teapot(peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await peer.read_request(reader)
        writer.write(b"HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\nboom")

    async with serve(teapot) as peer:
        f = fetcher()
        with pytest.raises(CacheError, match="HTTP 500 .*boom") as info:
            await get(f, peer)
        assert type(info.value) is CacheError
        f.close()


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (ok(BODY[:20]) + b"HTTP/1.1 200 OK\r\n", "past the end"),
        (ok(BODY[:10]), "Content-Length 10, expected 20"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20000 + b"\r\n\r\n", "over 16384"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "more than one"),
        (b"HTTP/1.1 500 Oops\r\nContent-Length: 99999999\r\n\r\n", "byte body"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "status line"),
    ],
)
async def test_broken_answers_are_connection_errors(answer: bytes, why: str) -> None:
    async def broken(peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await peer.answer(reader, writer, answer)
        await peer.read_request(reader)

    async with serve(broken) as peer:
        f = fetcher()
        with pytest.raises(FetchError, match=why):
            await get(f, peer, expect=20)
        await asyncio.sleep(0.05)
        assert peer.closes == 1  # never kept
        f.close()


async def test_bytes_after_an_answer_on_an_idle_connection_close_it() -> None:
    async def chatty(peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await peer.answer(reader, writer, ok(BODY))
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\n")  # an answer nobody asked for
        await keep_alive(peer, reader, writer)

    async with serve(chatty) as peer:
        f = fetcher()
        assert await get(f, peer) == BODY
        await asyncio.sleep(0.2)
        assert await get(f, peer) == BODY
        assert peer.accepted == 2
        f.close()


async def test_connection_refused_is_a_connection_error() -> None:
    async with serve(keep_alive) as peer:
        address = peer.address
    f = fetcher()
    with pytest.raises(FetchError, match="cannot connect"):
        await f.get(address, "/blocks/x", {}, {}, 1, total=5.0, stall=5.0)
    f.close()


async def test_unanswered_connect_gives_up_after_the_stall_timeout() -> None:
    """A listener whose accept queue is full drops SYNs, as a dead node does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    host, port = listener.getsockname()
    queued = [socket.socket() for _ in range(4)]
    for s in queued:
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect((host, port))
    f = fetcher()
    try:
        t0 = time.monotonic()
        with pytest.raises(FetchError, match="no answer in 0.3 s"):
            await f.get(f"http://{host}:{port}", "/blocks/x", {}, {}, 1, total=30.0, stall=0.3)
        assert time.monotonic() - t0 < 5.0
        assert f.connections == 0
    finally:
        f.close()
        for s in [*queued, listener]:
            s.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello",
    ],
)
async def test_answers_without_content_length_fall_back_to_aiohttp(answer: bytes) -> None:
    """The fetcher says Unsupported; the client asks again through aiohttp, which reads it."""

    async def unframed(peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await peer.answer(reader, writer, answer)

    async with serve(unframed) as peer:
        f = fetcher()
        with pytest.raises(Unsupported):
            await get(f, peer, expect=5)
        f.close()
        async with Client("http://127.0.0.1:9", ClientOptions(token=None)) as client:
            ref = BlockRef("bkt", "key", "etag", 0, 5, 5)
            chunks = await client._get_block(peer.address, ref.block_id(), ref, BlockSpan(0, 0, 5, 5), 5.0)
        assert b"".join(chunks) == b"hello"
        assert peer.accepted == 3 and len(peer.requests) == 3
        # Once an address answered unframed, the fetcher refuses it at once: no request.
        with pytest.raises(Unsupported, match="without Content-Length"):
            await get(f, peer, expect=5)
        assert len(peer.requests) == 3


async def test_https_addresses_are_unsupported() -> None:
    f = fetcher()
    with pytest.raises(Unsupported, match="http://"):
        await f.get("https://127.0.0.1:1", "/blocks/x", {}, {}, 1, total=5.0, stall=5.0)


def test_body_buffers_skip_zeroing_but_are_ordinary_bytearrays() -> None:
    from pipecache.client.blockfetch import _uninitialized

    buf = _uninitialized(5 << 20)
    assert type(buf) is bytearray and len(buf) == 5 << 20
    buf[-3:] = b"end"
    assert bytes(memoryview(buf)[-3:]) == b"end"
    assert _uninitialized(0) == bytearray()

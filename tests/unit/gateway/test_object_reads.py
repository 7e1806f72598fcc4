"""GetObject when the object is replaced while it is read: re-read fresh, never cut or 412.

The cluster is replaced by a small in-memory stand-in of the client's read API
(stat and open), so that a replacement can land between any two blocks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pipecache.client import ObjectChanged, ObjectInfo, Range
from pipecache.gateway import objects

BS = 64 * 1024


class Store:
    """One object whose version can change after a given number of block reads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.version = 0
        self.stats: list[bool] = []  # the ``fresh`` flag of each stat
        self.replace_after: list[int] = []  # per read, replace after this many blocks

    def body(self, version: int) -> bytes:
        return bytes([version % 251]) * self.size

    async def stat(self, bucket: str, key: str, *, fresh: bool = False, full: bool = False) -> ObjectInfo:
        self.stats.append(fresh)
        return ObjectInfo(bucket, key, self.size, f"v{self.version}", 0.0, block_size=BS)

    def open(self, bucket: str, key: str, rng: Range, *, info: ObjectInfo, tenant: str) -> Reader:
        after = self.replace_after.pop(0) if self.replace_after else None
        return Reader(self, info, after)


class Reader:
    def __init__(self, store: Store, info: ObjectInfo, replace_after: int | None) -> None:
        self.store, self.info, self.after, self.sent = store, info, replace_after, 0

    async def __aenter__(self) -> Reader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def next_span(self) -> list[bytes]:
        if self.after is not None and self.sent == self.after:
            self.store.version += 1
        if self.info.etag != f"v{self.store.version}":
            raise ObjectChanged("replaced")
        start = self.sent * BS
        self.sent += 1
        data = self.store.body(self.store.version)[start : start + BS]
        return [data[: len(data) // 2], data[len(data) // 2 :]]  # as a socket delivers: in pieces


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    servers: list[TestServer] = []

    async def start(store: Store) -> str:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                return await objects.get_object(request, store, "b", "k", [])  # type: ignore[arg-type]
            except Exception as exc:  # what the S3 middleware would turn into an error body
                return web.Response(status=getattr(exc, "status", 500), text=type(exc).__name__)

        app = web.Application()
        app.router.add_get("/b/k", handler)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/b/k"))

    yield start
    for s in servers:
        await s.close()


LARGE = objects.WHOLE // BS + 2  # blocks of an object that streams


@pytest.mark.parametrize(
    ("blocks", "replace_after"),
    [(1, 0), (3, 2), (40, 39), (LARGE, 0)],  # joined; whole, not joined; whole; streamed (first block)
)
async def test_a_replaced_object_is_read_again_fresh(serve: Any, blocks: int, replace_after: int) -> None:
    store = Store(blocks * BS)
    store.replace_after = [replace_after]  # during the first read, before that block
    url = await serve(store)
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        body = await r.read()
        assert r.status == 200
    assert body == store.body(1)
    assert store.stats == [False, True]


async def test_a_large_object_replaced_after_its_headers_is_cut_off(serve: Any) -> None:
    store = Store(LARGE * BS)
    store.replace_after = [2]
    url = await serve(store)
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()  # a short body is an error, never a shorter 200


async def test_replaced_during_every_read_is_a_503_not_a_412(serve: Any) -> None:
    store = Store(3 * BS)
    store.replace_after = [1] * objects.CHANGED_ATTEMPTS
    url = await serve(store)
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 503
        assert await r.text() == "SlowDown"
    assert store.stats == [False] + [True] * (objects.CHANGED_ATTEMPTS - 1)

"""Following the invalidation feed: a poll that fails once is not a lost feed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pipecache.client import connect
from pipecache.client import protocol as p
from pipecache.client.consistency import Consistency
from pipecache.client.invalidations import follow_invalidations
from pipecache.client.web import msgpack_response

Feed = Callable[[list[str]], AsyncIterator[list[float]]]


@pytest.fixture
async def feed() -> AsyncIterator[Feed]:
    """A master whose feed follows a script: "ok" answers, "drop" cuts the connection.

    Yields the ``wait`` of every poll it received, once the script is used up."""

    async def run(script: list[str]) -> AsyncIterator[list[float]]:
        waits: list[float] = []
        done = asyncio.Event()

        async def poll(request: web.Request) -> web.StreamResponse:
            req = p.InvalidationsRequest.unpack(await request.read())
            waits.append(req.wait)
            step = script[len(waits) - 1] if len(waits) <= len(script) else "hold"
            if len(waits) >= len(script):
                done.set()
            if step == "drop":
                assert request.transport is not None
                request.transport.close()  # as a master closing an idle connection would
                return web.Response()
            if step == "hold":
                await asyncio.sleep(3600)
            return msgpack_response(p.InvalidationsReply("e1", len(waits)))

        app = web.Application()
        app.router.add_post(p.INVALIDATIONS, poll)
        server = TestServer(app)
        await server.start_server()
        try:
            async with connect(str(server.make_url(""))) as client:
                following = follow_invalidations(client, Consistency("ttl", 60.0), 2.0, wait=5.0)
                task = asyncio.create_task(following)
                await asyncio.wait_for(done.wait(), 10)
                await asyncio.sleep(0.3)  # the client's reaction to the last step
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                yield waits
        finally:
            await server.close()

    yield run


async def test_one_dropped_poll_is_rechecked_at_once_not_reported(
    feed: Feed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pipecache.client.invalidations")
    async for waits in feed(["ok", "drop", "ok"]):
        assert waits[:3] == [5.0, 5.0, 0.0]  # the recheck asks for what is there, at once
        assert waits[3:4] == [5.0]  # then long polls again
    assert "feed lost" not in caplog.text


async def test_two_dropped_polls_in_a_row_are_a_lost_feed(
    feed: Feed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pipecache.client.invalidations")
    async for waits in feed(["ok", "drop", "drop", "ok"]):
        assert waits[:3] == [5.0, 5.0, 0.0]
    assert caplog.text.count("invalidation feed lost") == 1
    assert caplog.text.count("following the invalidation feed") == 2  # and found again

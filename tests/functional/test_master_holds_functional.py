"""The master's hold routes over real HTTP: which pin, unpin, release and free commands
reach which worker, and when (in-process server, the in-memory under-store of
test_master_functional)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pipecache.client.protocol import (
    FREE,
    HEARTBEAT,
    HOLD_RELEASE,
    HOLDS,
    JOBS,
    TTL,
    ObjectInfo,
)
from pipecache.master import make_app
from test_master_functional import Client, FakeStore, call, register, settings

MiB = 1024 * 1024


@pytest.fixture
async def fast() -> AsyncIterator[Client]:
    """A master whose sweep (and so hold expiry) runs every 50 ms."""
    app = make_app(settings(heartbeat_interval=0.05, worker_timeout=30), ufs=FakeStore())
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


@pytest.fixture
async def client(fast: Client) -> Client:
    return fast


def ids_of(key: str, size: int, etag: str) -> list[str]:
    info = ObjectInfo("data", key, size, etag, 0.0, block_size=MiB)
    return [info.block_id(i) for i in range(-(-size // MiB))]


A = ids_of("a.bin", 100, "ea")
B = ids_of("dir/b.bin", 5 * MiB, "eb")


async def beat(client: Client, wid: str, added: list[str] | None = None) -> list[dict[str, Any]]:
    status, reply = await call(client, HEARTBEAT, {"worker_id": wid, "added": added or []})
    assert status == 200, reply
    commands: list[dict[str, Any]] = reply["commands"]
    return commands


def blocks(commands: list[dict[str, Any]], kind: str) -> set[str]:
    return {b for c in commands if c["kind"] == kind for b in c["blocks"]}


async def test_pin_reaches_holders_and_owners_then_unpin_and_release(client: Client) -> None:
    await register(client, "w1", A + B[:2])
    status, info = await call(client, HOLDS, {"name": "p", "paths": ["s3://data/dir/"]})
    assert status == 200, info
    assert (info["name"], info["kind"], info["blocks"], info["resident_blocks"]) == ("p", "pin", 5, 2)
    # The only worker owns everything: resident blocks and those still to come are pinned there.
    assert blocks(await beat(client, "w1"), "pin") == set(B)
    assert await beat(client, "w1", added=B[2:3]) == [{"kind": "pin", "blocks": B[2:3], "tag": "p"}]
    status, infos = await call(client, HOLDS)
    assert [(h["name"], h["resident_blocks"]) for h in infos["holds"]] == [("p", 3)]
    status, done = await call(client, HOLD_RELEASE, {"name": "p", "evict_first": False})
    assert (status, done["state"]) == (200, "released")
    commands = await beat(client, "w1")
    assert blocks(commands, "unpin") == set(B)  # pinned ahead too: undone too
    assert commands[-1] == {"kind": "untag", "blocks": [], "tag": "p"}  # its reads count no more

    await call(client, HOLDS, {"name": "q", "paths": ["data/a.bin"], "kind": "protect"})
    assert blocks(await beat(client, "w1"), "pin") == set(A)
    await call(client, HOLD_RELEASE, {"name": "q"})
    assert await beat(client, "w1") == [
        {"kind": "release", "blocks": A},
        {"kind": "untag", "blocks": [], "tag": "q"},
    ]
    status, err = await call(client, HOLD_RELEASE, {"name": "q"})
    assert (status, err["code"]) == (404, "NoSuchHold")


async def test_a_reregistered_worker_gets_its_pins_again(client: Client) -> None:
    await register(client, "w1", A)
    await call(client, HOLDS, {"name": "p", "paths": ["s3://data/a.bin"]})
    assert blocks(await beat(client, "w1"), "pin") == set(A)
    await register(client, "w1", A)  # restarted: pins are gone from its memory
    assert await beat(client, "w1") == [{"kind": "pin", "blocks": A, "tag": "p"}]


async def test_load_with_a_hold_sends_pins_before_the_loads(client: Client) -> None:
    await register(client, "w1", [])
    status, job = await call(client, JOBS, {"paths": ["s3://data/dir/"], "hold": "run-1"})
    assert status == 200, job
    commands: list[dict[str, Any]] = []
    for _ in range(50):
        commands = await beat(client, "w1")
        if any(c["kind"] == "load" for c in commands):
            break
        await asyncio.sleep(0.02)
    kinds = [c["kind"] for c in commands]
    assert kinds.index("pin") < kinds.index("load")
    assert blocks(commands, "load") <= blocks(commands, "pin") == set(B)
    status, infos = await call(client, HOLDS)
    assert [(h["name"], h["kind"], h["blocks"]) for h in infos["holds"]] == [("run-1", "protect", 5)]
    await call(client, TTL, {"paths": ["s3://data/a.bin"], "seconds": 60})
    status, err = await call(client, JOBS, {"paths": ["s3://data/a.bin"], "hold": "ttl:s3://data/a.bin"})
    assert (status, err["code"]) == (400, "BadRequest")
    status, jobs = await call(client, JOBS)
    assert len(jobs["jobs"]) == 1  # the refused load started nothing


async def test_free_refuses_held_blocks_unless_forced(client: Client) -> None:
    await register(client, "w1", A + B)
    await call(client, HOLDS, {"name": "p", "paths": ["s3://data/a.bin"]})
    await beat(client, "w1")
    status, reply = await call(client, FREE, {"paths": ["s3://data/"]})
    assert (status, reply) == (200, {"freed": 5, "refused": 1})
    assert blocks(await beat(client, "w1"), "free") == set(B)
    status, reply = await call(client, FREE, {"paths": ["s3://data/a.bin"], "force": True})
    assert reply == {"freed": 1, "refused": 0}
    assert await beat(client, "w1") == [{"kind": "free", "blocks": A}]


async def test_ttl_and_pin_ttl_expire_in_the_sweep(client: Client) -> None:
    await register(client, "w1", A + B)
    await call(client, HOLDS, {"name": "p", "paths": ["s3://data/dir/b.bin"], "ttl": 1.5})
    status, info = await call(client, TTL, {"paths": ["s3://data/"], "seconds": 0.2})
    assert (status, info["kind"], info["blocks"]) == (200, "ttl", 6)
    seen: list[dict[str, Any]] = []
    for _ in range(100):  # until both have expired
        seen += await beat(client, "w1")
        if blocks(seen, "unpin"):
            break
        await asyncio.sleep(0.05)
    assert blocks(seen, "free") == set(A)  # B was pinned when the ttl entry expired
    assert blocks(seen, "unpin") == set(B)
    kinds = [c["kind"] for c in seen if c["kind"] != "pin"]
    assert kinds == ["free", "unpin", "untag"]
    status, infos = await call(client, HOLDS)
    assert infos["holds"] == []


async def test_hostile_hold_requests_get_400(client: Client) -> None:
    for route, body in [
        (HOLDS, b"\xc1garbage"),
        (HOLDS, {"name": "x", "paths": "s3://data/"}),
        (HOLDS, {"name": "x", "paths": ["s3://data/"], "kind": "forever"}),
        (FREE, {"paths": []}),
        (TTL, {"paths": ["s3://data/"], "seconds": -1}),
        (HOLD_RELEASE, {}),
    ]:
        status, reply = await call(client, route, body)
        assert status == 400 and reply["code"] == "BadRequest", (route, body, reply)
    status, reply = await call(client, HOLDS, {"name": "x", "paths": ["s3://nope/"]})
    assert (status, reply["code"]) == (404, "NoSuchBucket")
    status, infos = await call(client, HOLDS)
    assert infos == {"holds": []}  # a failed resolution creates nothing

"""The real worker app over real HTTP, against a tiny in-test master and a ``file://`` under-store.

The master here is a few lines of aiohttp that speak the protocol messages and
record what they received (the real master is tested on its own); it can fail
heartbeats, forget the worker and hand out commands. The under-store is a real
folder read through ``open_understore``; nothing on the HTTP path is mocked.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pipecache.client.protocol import (
    BLOCKS,
    H_BLOCK_LENGTH,
    H_TIER,
    HEARTBEAT,
    METRICS,
    REGISTER,
    BlockRef,
    Command,
    ErrorBody,
    HeartbeatReply,
    HeartbeatRequest,
    RegisterReply,
    RegisterRequest,
)
from pipecache.client.ufs import open_understore
from pipecache.client.web import error_response, msgpack_response, read_message
from pipecache.tiering.errors import UnknownWorker
from pipecache.tiering.ssd import HEADER_SIZE, block_path
from pipecache.worker import WorkerSettings, make_app
from pipecache.worker.app import HEARTBEAT_KEY, WORKER_ID
from pipecache.worker.handlers import SERVICE
from prometheus_client.parser import text_string_to_metric_families

Client = TestClient[web.Request, web.Application]

BS = 64 * 1024
SIZE = 2 * BS + 18_928  # three blocks: 64 KiB, 64 KiB and a short one
BUCKET, KEY = "data", "dir/obj.bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(pred: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)


# ---- the in-test master ----------------------------------------------------------------


@dataclass
class FakeMaster:
    """Answers REGISTER and HEARTBEAT, records them, and keeps each worker's block set."""

    ufs: str
    interval: float = 0.05
    registrations: list[RegisterRequest] = field(default_factory=list)
    beats: list[HeartbeatRequest] = field(default_factory=list)
    failed_beats: list[HeartbeatRequest] = field(default_factory=list)
    fail_next: int = 0
    fail_adding: str | None = None
    """Answer 500 to the first beat that adds this block (then forget it)."""
    commands: list[Command] = field(default_factory=list)
    blocks: dict[str, set[str]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(REGISTER, self.register)
        app.router.add_post(HEARTBEAT, self.heartbeat)
        return app

    async def register(self, request: web.Request) -> web.Response:
        req = await read_message(request, RegisterRequest)
        self.registrations.append(req)
        self.blocks[req.worker_id] = set(req.blocks)
        return msgpack_response(RegisterReply(req.worker_id, self.interval, self.ufs))

    async def heartbeat(self, request: web.Request) -> web.Response:
        req = await read_message(request, HeartbeatRequest)
        if req.worker_id not in self.blocks:
            return error_response(UnknownWorker(f"no worker {req.worker_id}"))
        if self.fail_next or (self.fail_adding is not None and self.fail_adding in req.added):
            self.fail_next = max(self.fail_next - 1, 0)
            self.fail_adding = None
            self.failed_beats.append(req)
            return web.Response(status=500, text="master trouble")
        self.beats.append(req)
        held = self.blocks[req.worker_id]
        held.difference_update(req.removed)
        held.update(req.added)
        commands, self.commands = self.commands, []
        return msgpack_response(HeartbeatReply(commands))

    def forget(self, worker_id: str) -> None:
        del self.blocks[worker_id]


# ---- fixtures -----------------------------------------------------------------------------


@dataclass
class Obj:
    data: bytes
    etag: str

    def ref(self, index: int, *, etag: str | None = None, key: str = KEY) -> BlockRef:
        return BlockRef(BUCKET, key, etag or self.etag, index, len(self.data), BS)

    def bid(self, index: int) -> str:
        return self.ref(index).block_id()

    def block(self, index: int) -> bytes:
        return self.data[index * BS : (index + 1) * BS]


@pytest.fixture
def ufs_root(tmp_path: Path) -> Path:
    root = tmp_path / "ufs"
    (root / BUCKET / "dir").mkdir(parents=True)
    return root


@pytest.fixture
async def obj(ufs_root: Path) -> AsyncIterator[Obj]:
    data = os.urandom(SIZE)
    (ufs_root / BUCKET / KEY).write_bytes(data)
    ufs = open_understore(f"file://{ufs_root}")
    info = await ufs.head(BUCKET, KEY)
    await ufs.close()
    yield Obj(data, info.etag)


@pytest.fixture
async def master(ufs_root: Path) -> AsyncIterator[tuple[FakeMaster, TestServer]]:
    fake = FakeMaster(ufs=f"file://{ufs_root}")
    server = TestServer(fake.app(), host="127.0.0.1", port=free_port())
    await server.start_server()
    yield fake, server
    await server.close()


StartWorker = Callable[..., Awaitable[Client]]


@pytest.fixture
async def start_worker(tmp_path: Path, master: tuple[FakeMaster, TestServer]) -> AsyncIterator[StartWorker]:
    """Start a worker app (closed at the end); keyword arguments override its settings."""
    clients: list[Client] = []

    async def start(**overrides: Any) -> Client:
        port = free_port()
        kw: dict[str, Any] = dict(
            master=f"http://127.0.0.1:{master[1].port}",
            port=port,
            data_dir=str(tmp_path / "worker"),
            memory_bytes=100_000,  # one full block: the second pushes the first to SSD
            ssd_bytes=10 * 1024 * 1024,
            retry_max=0.2,
        )
        kw.update(overrides)
        client: Client = TestClient(TestServer(make_app(WorkerSettings(**kw)), port=port))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for c in clients:
        await c.close()


@pytest.fixture
async def worker(start_worker: StartWorker) -> Client:
    return await start_worker()


async def get(
    client: Client, obj: Obj, index: int, rng: str | None = None
) -> tuple[int, bytes, dict[str, str]]:
    headers = {} if rng is None else {"Range": rng}
    async with client.get(
        f"{BLOCKS}/{obj.bid(index)}", params=obj.ref(index).to_query(), headers=headers
    ) as r:
        return r.status, await r.read(), dict(r.headers)


def metric(client: Client, text: str, name: str, **labels: str) -> float:
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


async def metrics(client: Client) -> str:
    async with client.get(METRICS) as r:
        return await r.text()


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def store_of(client: Client) -> Any:
    return client.app[SERVICE].store  # type: ignore[index]


# ---- serving ---------------------------------------------------------------------------------


async def test_miss_then_memory_hit(worker: Client, obj: Obj) -> None:
    status, body, headers = await get(worker, obj, 1)
    assert status == 200 and body == obj.block(1)
    assert headers[H_TIER] == "ufs" and headers[H_BLOCK_LENGTH] == str(BS)
    assert headers["Content-Length"] == str(BS)
    status, body, headers = await get(worker, obj, 1)
    assert status == 200 and body == obj.block(1) and headers[H_TIER] == "memory"
    status, body, headers = await get(worker, obj, 2)  # the short last block
    assert body == obj.data[2 * BS :] and headers[H_BLOCK_LENGTH] == str(SIZE - 2 * BS)

    text = await metrics(worker)
    assert metric(worker, text, "pipecache_ufs_requests_total") == 2
    assert metric(worker, text, "pipecache_ufs_read_bytes_total") == SIZE - BS
    assert metric(worker, text, "pipecache_cache_hit_bytes_total", tier="memory") == BS
    assert metric(worker, text, "pipecache_cache_miss_bytes_total") == SIZE - BS
    assert metric(worker, text, "pipecache_worker_requests_total", tier="memory", status="200") == 1
    assert metric(worker, text, "pipecache_worker_tier_used_bytes", tier="memory") > 0
    assert metric(worker, text, "pipecache_worker_tier_capacity_bytes", tier="memory") == 100_000


@pytest.fixture(params=["ufs", "memory", "ssd"])
def tier(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _make_resident(client: Client, obj: Obj, tier: str) -> None:
    """Leave block 0 in ``tier`` (ufs: not resident at all)."""
    if tier == "ufs":
        return
    await get(client, obj, 0)
    if tier == "ssd":
        await get(client, obj, 1)  # memory holds one block: block 0 moves to SSD
    assert store_of(client).tier_of(obj.bid(0)) == tier


@pytest.mark.parametrize(
    ("rng", "start", "end"),
    [
        ("bytes=10-19", 10, 20),
        ("bytes=-5", BS - 5, BS),
        ("bytes=65000-", 65000, BS),
        ("bytes=100-999999", 100, BS),
        ("bytes=0-0", 0, 1),
    ],
)
async def test_ranges_are_byte_exact_in_every_tier(
    start_worker: StartWorker, obj: Obj, tier: str, rng: str, start: int, end: int
) -> None:
    client = await start_worker(promote_on_hit=False)
    await _make_resident(client, obj, tier)
    status, body, headers = await get(client, obj, 0, rng)
    assert status == 206 and headers[H_TIER] == tier
    assert body == obj.block(0)[start:end]
    assert headers["Content-Range"] == f"bytes {start}-{end - 1}/{BS}"
    assert headers["Content-Length"] == str(end - start)


async def test_bad_ranges(worker: Client, obj: Obj) -> None:
    status, body, headers = await get(worker, obj, 0, f"bytes={BS}-")
    assert status == 416 and headers["Content-Range"] == f"bytes */{BS}"
    assert ErrorBody.unpack(body).code == "InvalidRange"
    status, body, _ = await get(worker, obj, 0, "bytes=0-1,4-5")
    assert status == 400 and ErrorBody.unpack(body).code == "BadRequest"
    assert store_of(worker).tier_of(obj.bid(0)) is None  # refused before any fetch


@pytest.fixture(params=["sendfile", "fallback", "loop-without-sendfile"])
def sender(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_ssd_tier_is_served_with_sendfile(
    start_worker: StartWorker, obj: Obj, sender: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await start_worker(promote_on_hit=False, sendfile=sender != "fallback")
    await _make_resident(client, obj, "ssd")
    loop = asyncio.get_running_loop()
    calls: list[tuple[int, int | None]] = []
    real_sendfile = loop.sendfile

    async def spy(transport: Any, file: Any, offset: int = 0, count: int | None = None, **kw: Any) -> int:
        calls.append((offset, count))
        if sender == "loop-without-sendfile":  # as uvloop: AbstractEventLoop.sendfile
            raise NotImplementedError
        return await real_sendfile(transport, file, offset, count, **kw)

    monkeypatch.setattr(loop, "sendfile", spy)
    for _ in range(2):  # twice: the first response left the connection in a good state
        status, body, headers = await get(client, obj, 0)
        assert status == 200 and headers[H_TIER] == "ssd" and body == obj.block(0)
    status, body, _ = await get(client, obj, 0, "bytes=1000-2999")
    assert status == 206 and body == obj.block(0)[1000:3000]
    if sender == "fallback":
        assert calls == []
    else:
        assert calls == [(HEADER_SIZE, BS), (HEADER_SIZE, BS), (HEADER_SIZE + 1000, 2000)]
    text = await metrics(client)
    assert metric(client, text, "pipecache_cache_hit_bytes_total", tier="ssd") == 2 * BS + 2000


async def test_ssd_hit_is_promoted_in_the_background(start_worker: StartWorker, obj: Obj) -> None:
    client = await start_worker()
    await _make_resident(client, obj, "ssd")
    for _ in range(2):  # promoted on its second hit (soon after the first)
        _, body, headers = await get(client, obj, 0)
        assert headers[H_TIER] == "ssd" and body == obj.block(0)
    await eventually(lambda: store_of(client).tier_of(obj.bid(0)) == "memory")
    _, body, headers = await get(client, obj, 0)
    assert headers[H_TIER] == "memory" and body == obj.block(0)


async def test_corrupt_ssd_block_is_refetched(start_worker: StartWorker, obj: Obj, tmp_path: Path) -> None:
    client = await start_worker(promote_on_hit=False)
    await _make_resident(client, obj, "ssd")
    flip_byte(block_path(str(tmp_path / "worker" / "blocks"), obj.bid(0)), HEADER_SIZE + 1234)
    status, body, headers = await get(client, obj, 0)
    assert status == 200 and headers[H_TIER] == "ufs" and body == obj.block(0)
    text = await metrics(client)
    assert metric(client, text, "pipecache_worker_corrupt_blocks_total") == 1
    assert metric(client, text, "pipecache_ufs_requests_total") == 3  # blocks 0, 1, then 0 again
    _, body, headers = await get(client, obj, 0)
    assert headers[H_TIER] == "memory" and body == obj.block(0)


async def test_head_reports_residency_without_fetching(worker: Client, obj: Obj) -> None:
    url, q = f"{BLOCKS}/{obj.bid(0)}", obj.ref(0).to_query()
    async with worker.head(url, params=q) as r:
        assert r.status == 404
    await get(worker, obj, 0)
    async with worker.head(url, params=q, headers={"Range": "bytes=0-9"}) as r:
        assert r.status == 206 and r.headers[H_TIER] == "memory"
        assert r.headers["Content-Length"] == "10" and await r.read() == b""
    text = await metrics(worker)
    assert metric(worker, text, "pipecache_ufs_requests_total") == 1


async def test_block_larger_than_every_tier_passes_through(start_worker: StartWorker, obj: Obj) -> None:
    client = await start_worker(memory_bytes=1000, ssd_bytes=0)
    for _ in range(2):
        status, body, headers = await get(client, obj, 0)
        assert status == 200 and headers[H_TIER] == "ufs" and body == obj.block(0)
    text = await metrics(client)
    assert metric(client, text, "pipecache_ufs_requests_total") == 2


async def test_empty_object(worker: Client, ufs_root: Path) -> None:
    (ufs_root / BUCKET / "empty").write_bytes(b"")
    ufs = open_understore(f"file://{ufs_root}")
    etag = (await ufs.head(BUCKET, "empty")).etag
    await ufs.close()
    ref = BlockRef(BUCKET, "empty", etag, 0, 0, BS)
    async with worker.get(f"{BLOCKS}/{ref.block_id()}", params=ref.to_query()) as r:
        assert r.status == 200 and await r.read() == b"" and r.headers[H_BLOCK_LENGTH] == "0"


# ---- single flight -------------------------------------------------------------------------


class GatedUnderStore:
    """Wraps the worker's real under-store: counts reads and holds them until released."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.reads = 0
        self.gate = asyncio.Event()

    async def get_range(self, *args: Any, **kw: Any) -> bytes:
        self.reads += 1
        await self.gate.wait()
        data: bytes = await self.inner.get_range(*args, **kw)
        return data

    async def close(self) -> None:
        await self.inner.close()


async def test_concurrent_misses_share_one_read(worker: Client, obj: Obj) -> None:
    svc = worker.app[SERVICE]  # type: ignore[index]
    real = await svc.ufs.get(5.0)
    gated = GatedUnderStore(real)
    svc.ufs.set(gated)

    leaver = asyncio.create_task(get(worker, obj, 0))  # a client that goes away mid-fetch
    others = [asyncio.create_task(get(worker, obj, 0)) for _ in range(20)]
    await eventually(lambda: gated.reads == 1)
    await asyncio.sleep(0.2)  # let every request reach the shared fetch
    leaver.cancel()
    await asyncio.gather(leaver, return_exceptions=True)
    gated.gate.set()
    results = await asyncio.gather(*others)
    assert all(r[0] == 200 and r[1] == obj.block(0) and r[2][H_TIER] == "ufs" for r in results)
    assert gated.reads == 1
    text = await metrics(worker)
    assert metric(worker, text, "pipecache_ufs_requests_total") == 1


# ---- refusals and under-store errors ------------------------------------------------------


async def test_block_id_must_match_the_query(worker: Client, obj: Obj) -> None:
    async with worker.get(f"{BLOCKS}/{obj.bid(2)}", params=obj.ref(1).to_query()) as r:
        assert r.status == 400
        assert ErrorBody.unpack(await r.read()).code == "BadRequest"
    async with worker.get(f"{BLOCKS}/not-an-id", params=obj.ref(1).to_query()) as r:
        assert r.status == 400
    assert store_of(worker).block_ids() == []


async def test_changed_object_is_412(worker: Client, obj: Obj, ufs_root: Path) -> None:
    (ufs_root / BUCKET / KEY).write_bytes(obj.data + b"more")
    status, body, headers = await get(worker, obj, 0)
    assert status == 412 and ErrorBody.unpack(body).code == "PreconditionFailed"
    text = await metrics(worker)
    assert metric(worker, text, "pipecache_worker_requests_total", tier="none", status="412") == 1
    # The error was not cached: with the right ETag the next read works.
    ufs = open_understore(f"file://{ufs_root}")
    new = Obj(obj.data + b"more", (await ufs.head(BUCKET, KEY)).etag)
    await ufs.close()
    status, body, _ = await get(worker, new, 0)
    assert status == 200 and body == new.block(0)


async def test_missing_key_is_404(worker: Client, obj: Obj) -> None:
    ref = obj.ref(0, key="nope")
    async with worker.get(f"{BLOCKS}/{ref.block_id()}", params=ref.to_query()) as r:
        assert r.status == 404 and ErrorBody.unpack(await r.read()).code == "NoSuchKey"


# ---- the master conversation -----------------------------------------------------------------


async def test_registration_and_deltas(
    worker: Client, obj: Obj, master: tuple[FakeMaster, TestServer]
) -> None:
    fake, _ = master
    await eventually(lambda: len(fake.registrations) == 1)
    reg = fake.registrations[0]
    wid = worker.app[WORKER_ID]  # type: ignore[index]
    assert reg.worker_id == wid and reg.blocks == []
    assert reg.address == f"http://127.0.0.1:{worker.server.port}"
    assert reg.capacity == {"memory": 100_000, "ssd": 10 * 1024 * 1024}
    for i in range(3):
        await get(worker, obj, i)
    resident = set(store_of(worker).block_ids())
    await eventually(lambda: fake.blocks[wid] == resident)

    fake.commands.append(Command("free", [obj.bid(2)]))
    await eventually(lambda: any(obj.bid(2) in b.removed for b in fake.beats))
    assert store_of(worker).tier_of(obj.bid(2)) is None
    assert fake.blocks[wid] == resident - {obj.bid(2)}
    assert all(b.usage.keys() == {"memory", "ssd"} for b in fake.beats)


async def test_deltas_survive_a_failed_heartbeat(
    worker: Client, obj: Obj, master: tuple[FakeMaster, TestServer]
) -> None:
    fake, _ = master
    wid = worker.app[WORKER_ID]  # type: ignore[index]
    await eventually(lambda: len(fake.beats) >= 1)
    fake.fail_adding = obj.bid(0)
    await get(worker, obj, 0)
    await eventually(lambda: len(fake.failed_beats) == 1)
    assert fake.failed_beats[0].added == [obj.bid(0)]
    await get(worker, obj, 1)  # a newer change, merged with the undelivered one
    await eventually(lambda: fake.blocks[wid] == {obj.bid(0), obj.bid(1)})
    assert len(fake.registrations) == 1  # resent as a delta, not via a full report


async def test_unknown_worker_registers_again_with_a_full_report(
    worker: Client, obj: Obj, master: tuple[FakeMaster, TestServer]
) -> None:
    fake, _ = master
    wid = worker.app[WORKER_ID]  # type: ignore[index]
    await eventually(lambda: len(fake.registrations) == 1)
    await get(worker, obj, 0)
    await get(worker, obj, 1)
    fake.forget(wid)
    await eventually(lambda: len(fake.registrations) == 2)
    assert set(fake.registrations[1].blocks) == {obj.bid(0), obj.bid(1)}
    assert worker.app[HEARTBEAT_KEY].registrations == 2  # type: ignore[index]


async def test_restart_keeps_the_worker_id_and_reports_ssd_blocks(
    start_worker: StartWorker, obj: Obj, master: tuple[FakeMaster, TestServer]
) -> None:
    fake, _ = master
    first = await start_worker()
    for i in range(3):
        await get(first, obj, i)
    on_ssd = {b for b in (obj.bid(0), obj.bid(1), obj.bid(2)) if store_of(first).tier_of(b) == "ssd"}
    assert obj.bid(0) in on_ssd
    wid = first.app[WORKER_ID]  # type: ignore[index]
    await first.close()

    second = await start_worker()
    await eventually(lambda: len(fake.registrations) == 2)
    again = fake.registrations[1]
    assert again.worker_id == wid == second.app[WORKER_ID]  # type: ignore[index]
    assert set(again.blocks) == on_ssd
    status, body, headers = await get(second, obj, 0)
    assert status == 200 and headers[H_TIER] == "ssd" and body == obj.block(0)


async def test_master_that_starts_late(tmp_path: Path, obj: Obj, ufs_root: Path) -> None:
    port = free_port()
    wport = free_port()
    settings = WorkerSettings(
        master=f"http://127.0.0.1:{port}",
        port=wport,
        data_dir=str(tmp_path / "w"),
        memory_bytes=1 << 20,
        ssd_bytes=0,
        retry_max=0.1,
        ready_timeout=0.2,
    )
    client: Client = TestClient(TestServer(make_app(settings), port=wport))
    await client.start_server()
    try:
        status, body, _ = await get(client, obj, 0)
        assert status == 503
        err = ErrorBody.unpack(body)
        assert err.code == "ServiceUnavailable" and "not registered" in err.message

        fake = FakeMaster(ufs=f"file://{ufs_root}")
        server = TestServer(fake.app(), host="127.0.0.1", port=port)
        await server.start_server()
        try:
            await eventually(lambda: len(fake.registrations) == 1)
            status, body, headers = await get(client, obj, 0)
            assert status == 200 and body == obj.block(0) and headers[H_TIER] == "ufs"
        finally:
            await server.close()
    finally:
        await client.close()


async def test_master_restart(
    worker: Client, obj: Obj, master: tuple[FakeMaster, TestServer], ufs_root: Path
) -> None:
    fake, server = master
    wid = worker.app[WORKER_ID]  # type: ignore[index]
    await get(worker, obj, 0)
    await eventually(lambda: fake.blocks[wid] == {obj.bid(0)})
    fake.commands.append(Command("pin", [obj.bid(0), obj.bid(1)]))
    await eventually(lambda: store_of(worker).pinned() == sorted([obj.bid(0), obj.bid(1)]))
    port = server.port
    await server.close()  # the master goes away; beats fail, changes pile up
    await get(worker, obj, 2)
    await eventually(lambda: worker.app[HEARTBEAT_KEY].failed_beats >= 2)  # type: ignore[index]

    reborn = FakeMaster(ufs=f"file://{ufs_root}")  # knows nothing: UnknownWorker
    server2 = TestServer(reborn.app(), host="127.0.0.1", port=port)
    await server2.start_server()
    try:
        await eventually(lambda: len(reborn.registrations) == 1)
        assert set(reborn.registrations[0].blocks) == {obj.bid(0), obj.bid(2)}
        assert reborn.registrations[0].worker_id == wid
        # Pins from before the restart are gone; the new master's pins apply.
        assert store_of(worker).pinned() == []
        reborn.commands.append(Command("pin", [obj.bid(2)]))
        await eventually(lambda: store_of(worker).pinned() == [obj.bid(2)])
    finally:
        await server2.close()

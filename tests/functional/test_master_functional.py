"""The master over real HTTP: msgpack bodies against an in-process aiohttp server.

The under-store is a small in-memory fake that counts its calls (the real ones
are tested against moto elsewhere); one test runs on a real ``file://`` folder.
"""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pipecache.client.protocol import (
    BUCKETS,
    HEAD_BUCKET,
    HEALTH,
    HEARTBEAT,
    LIST,
    LOCATE,
    METRICS,
    MSGPACK,
    REGISTER,
    STAT,
    WORKERS,
    BucketInfo,
    Command,
    ListEntry,
    ListPage,
    Message,
    ObjectInfo,
    pack,
    unpack,
)
from pipecache.master import MasterSettings, make_app
from pipecache.master.app import MASTER
from pipecache.tiering.errors import NoSuchBucket, NoSuchKey

Client = TestClient[web.Request, web.Application]
MiB = 1024 * 1024


def bid(n: int) -> str:
    return f"{n:016x}"


class FakeStore:
    """An in-memory UnderStore: bucket -> key -> (size, etag); counts calls."""

    uri = "fake://"

    def __init__(self) -> None:
        self.buckets: dict[str, dict[str, tuple[int, str]]] = {
            "data": {"a.bin": (100, "ea"), "dir/b.bin": (5 * MiB, "eb"), "dir/c.bin": (0, "ec")},
            "empty": {},
        }
        self.calls: collections.Counter[str] = collections.Counter()
        self.gate: asyncio.Event | None = None

    def _bucket(self, bucket: str) -> dict[str, tuple[int, str]]:
        if bucket not in self.buckets:
            raise NoSuchBucket(bucket)
        return self.buckets[bucket]

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        self.calls["head"] += 1
        if self.gate is not None:
            await self.gate.wait()
        objs = self._bucket(bucket)
        if key not in objs:
            raise NoSuchKey(f"{bucket}/{key}")
        size, etag = objs[key]
        return ObjectInfo(bucket, key, size, etag, 1_700_000_000.0, block_size=1)

    async def get_range(
        self, bucket: str, key: str, start: int, length: int, etag: str | None = None
    ) -> bytes:
        raise AssertionError("the master never reads bytes")

    async def list(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        self.calls["list"] += 1
        after = max(start_after, token or "")
        entries: list[ListEntry] = []
        prefixes: list[str] = []
        for key, (size, etag) in sorted(self._bucket(bucket).items()):
            if not key.startswith(prefix) or key <= after:
                continue
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                p = key[: cut + len(delimiter)]
                if p not in prefixes:
                    prefixes.append(p)
            else:
                entries.append(ListEntry(key, size, etag, 1_700_000_000.0))
        return ListPage(entries[:max_keys], prefixes, len(entries) > max_keys)

    async def list_buckets(self) -> list[BucketInfo]:
        self.calls["list_buckets"] += 1
        return [BucketInfo(name) for name in sorted(self.buckets)]

    async def head_bucket(self, bucket: str) -> None:
        self.calls["head_bucket"] += 1
        self._bucket(bucket)

    async def close(self) -> None:
        self.calls["close"] += 1


async def call(client: Client, path: str, body: Message | bytes | Any = None) -> tuple[int, Any]:
    """POST a msgpack body (GET without one); return (status, decoded reply)."""
    if body is None:
        resp = await client.get(path)
    else:
        data = body.pack() if isinstance(body, Message) else body
        data = data if isinstance(data, bytes) else pack(data)
        # aiohttp warns (ResourceWarning) about raw bytes bodies over 1 MiB.
        payload = io.BytesIO(data) if len(data) > MiB else data
        resp = await client.post(path, data=payload, headers={"Content-Type": MSGPACK})
    raw = await resp.read()
    return resp.status, unpack(raw) if resp.content_type == MSGPACK else raw


async def register(client: Client, wid: str, blocks: list[str]) -> None:
    status, reply = await call(
        client,
        REGISTER,
        {
            "worker_id": wid,
            "address": f"http://{wid}:9100",
            "blocks": blocks,
            "capacity": {"memory": 1 << 30},
        },
    )
    assert status == 200, reply
    assert reply["worker_id"] == wid


def settings(**changes: Any) -> MasterSettings:
    base: dict[str, Any] = {"ufs": "http://127.0.0.1:1", "port": 0, "block_size": MiB}
    return MasterSettings(**{**base, **changes})


MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def make_client(store: FakeStore) -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    async def make(**changes: Any) -> Client:
        client: Client = TestClient(TestServer(make_app(settings(**changes), ufs=store)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    return await make_client()


# ---- workers and blocks ---------------------------------------------------------


async def test_register_heartbeat_and_locate(client: Client) -> None:
    await register(client, "w1", [bid(1), bid(2)])
    await register(client, "w2", [bid(2), bid(3)])
    status, reply = await call(client, REGISTER, {"worker_id": "w3", "address": "http://w3:1"})
    assert status == 200
    assert reply == {"worker_id": "w3", "heartbeat_interval": 1.0, "ufs": "http://127.0.0.1:1"}

    status, reply = await call(
        client,
        HEARTBEAT,
        {"worker_id": "w1", "added": [bid(4)], "removed": [bid(2)], "usage": {"memory": 77}},
    )
    assert (status, reply) == (200, {"commands": []})

    status, reply = await call(client, LOCATE, {"ids": [bid(n) for n in (1, 2, 3, 4, 5)]})
    assert status == 200
    assert reply["locations"] == {
        bid(1): ["w1"],
        bid(2): ["w2"],
        bid(3): ["w2"],
        bid(4): ["w1"],
    }
    status, reply = await call(client, WORKERS)
    assert [w["worker_id"] for w in reply["workers"]] == ["w1", "w2", "w3"]
    w1 = reply["workers"][0]
    assert (w1["blocks"], w1["usage"], w1["address"]) == (2, {"memory": 77}, "http://w1:9100")
    assert abs(w1["last_seen"] - time.time()) < 60  # wall-clock seconds on the wire


async def test_commands_reach_the_worker_in_its_heartbeat_reply(client: Client) -> None:
    await register(client, "w1", [bid(1)])
    client.app[MASTER].state.queue_command("w1", Command("free", [bid(1)]))
    status, reply = await call(client, HEARTBEAT, {"worker_id": "w1"})
    assert reply == {"commands": [{"kind": "free", "blocks": [bid(1)]}]}
    status, reply = await call(client, HEARTBEAT, {"worker_id": "w1"})
    assert reply == {"commands": []}


async def test_unknown_worker_heartbeat_is_404_unknown_worker(client: Client) -> None:
    status, reply = await call(client, HEARTBEAT, {"worker_id": "ghost"})
    assert status == 404 and reply["code"] == "UnknownWorker"


async def test_silent_worker_expires_then_reregisters(make_client: MakeClient) -> None:
    client = await make_client(heartbeat_interval=0.05, worker_timeout=0.5)
    await register(client, "alive", [bid(1), bid(2)])
    await register(client, "silent", [bid(2), bid(3)])
    deadline = time.monotonic() + 5
    while True:
        status, _ = await call(client, HEARTBEAT, {"worker_id": "alive"})
        assert status == 200
        _, reply = await call(client, WORKERS)
        if [w["worker_id"] for w in reply["workers"]] == ["alive"]:
            break
        assert time.monotonic() < deadline, "the silent worker was never dropped"
        await asyncio.sleep(0.05)

    _, reply = await call(client, LOCATE, {"ids": [bid(1), bid(2), bid(3)]})
    assert reply["locations"] == {bid(1): ["alive"], bid(2): ["alive"]}
    status, reply = await call(client, HEARTBEAT, {"worker_id": "silent", "added": [bid(9)]})
    assert status == 404 and reply["code"] == "UnknownWorker"

    await register(client, "silent", [bid(3)])
    _, reply = await call(client, LOCATE, {"ids": [bid(3)]})
    assert reply["locations"] == {bid(3): ["silent"]}
    _, text = await call(client, METRICS)
    assert b"pipecache_master_workers_expired_total 1.0" in text


async def test_a_failing_sweep_is_logged_and_sweeping_goes_on(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client(heartbeat_interval=0.05, worker_timeout=0.2)
    state = client.app[MASTER].state
    real, failures = state.expire, []

    def flaky(now: float) -> list[str]:
        if not failures:
            failures.append(now)
            raise RuntimeError("boom")
        return real(now)

    state.expire = flaky  # type: ignore[method-assign]
    await register(client, "w", [bid(1)])
    with caplog.at_level(logging.ERROR, logger="pipecache.master.app"):
        for _ in range(100):
            if state.worker_count() == 0:
                break
            await asyncio.sleep(0.05)
    assert failures and state.worker_count() == 0
    assert "liveness sweep failed" in caplog.text


async def test_a_large_full_report_is_accepted(client: Client) -> None:
    blocks = [bid(n) for n in range(1, 100_001)]  # ~1.9 MB of msgpack: over aiohttp's 1 MiB
    await register(client, "big", blocks)
    _, reply = await call(client, LOCATE, {"ids": [bid(1), bid(100_000)]})
    assert reply["locations"] == {bid(1): ["big"], bid(100_000): ["big"]}
    assert client.app[MASTER].state.block_count() == 100_000


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (REGISTER, b"\xc1 not msgpack at all"),
        (REGISTER, b""),
        (REGISTER, [1, 2, 3]),
        (REGISTER, {}),
        (REGISTER, {"worker_id": 5, "address": "http://x:1"}),
        (REGISTER, {"worker_id": "w", "address": "ftp://x"}),
        (REGISTER, {"worker_id": "w", "address": "http://x:1", "blocks": ["xyz"]}),
        (REGISTER, {"worker_id": "w", "address": "http://x:1", "blocks": "0" * 16}),
        (HEARTBEAT, {"worker_id": "w0", "added": [bid(0xABCDEF).upper()]}),
        (HEARTBEAT, {"worker_id": "w0", "removed": [None]}),
        (HEARTBEAT, {"worker_id": "w0", "usage": {"memory": "lots"}}),
        (LOCATE, {"ids": ["g" * 16]}),
        (LOCATE, {"ids": bid(1)}),
        (STAT, {"bucket": "data", "key": 7}),
        (STAT, {"bucket": "", "key": "k"}),
        (LIST, {"bucket": "data", "max_keys": 5000}),
        (HEAD_BUCKET, {"bucket": None}),
        (HEAD_BUCKET, {"bucket": ""}),
    ],
)
async def test_malformed_bodies_get_400_and_the_server_keeps_serving(
    client: Client, path: str, body: Any
) -> None:
    await register(client, "w0", [])
    status, reply = await call(client, path, body)
    assert status == 400, reply
    assert reply["code"] in ("BadRequest", "InvalidArgument") and reply["message"]
    status, _ = await call(client, HEALTH)
    assert status == 200
    await register(client, "w1", [bid(1)])
    _, reply = await call(client, WORKERS)
    assert [w["worker_id"] for w in reply["workers"]] == ["w0", "w1"]


# ---- object metadata -----------------------------------------------------------


async def test_stat_is_cached(client: Client, store: FakeStore) -> None:
    status, first = await call(client, STAT, {"bucket": "data", "key": "dir/b.bin"})
    assert status == 200
    # How long the master still trusts it: its whole TTL now, less on a later answer.
    fresh = first.pop("fresh_for")
    assert 0 < fresh <= 60
    assert first == {
        "bucket": "data",
        "key": "dir/b.bin",
        "size": 5 * MiB,
        "etag": "eb",
        "last_modified": 1_700_000_000.0,
        "block_size": MiB,
    }
    status, second = await call(client, STAT, {"bucket": "data", "key": "dir/b.bin"})
    assert 0 < second.pop("fresh_for") <= fresh
    assert (status, second) == (200, first)
    assert store.calls["head"] == 1
    _, text = await call(client, METRICS)
    assert b'pipecache_master_metadata_cache_total{result="hit"} 1.0' in text
    assert b'pipecache_master_metadata_cache_total{result="miss"} 1.0' in text


async def test_concurrent_stat_misses_share_one_head(client: Client, store: FakeStore) -> None:
    store.gate = asyncio.Event()
    calls = [call(client, STAT, {"bucket": "data", "key": "a.bin"}) for _ in range(20)]
    tasks = [asyncio.create_task(c) for c in calls]
    for _ in range(200):
        if store.calls["head"]:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # let every request arrive while the HEAD is held
    store.gate.set()
    results = await asyncio.gather(*tasks)
    assert {r[0] for r in results} == {200}
    assert all(r[1]["etag"] == "ea" for r in results)
    assert store.calls["head"] == 1


async def test_stat_errors_are_typed(client: Client, store: FakeStore) -> None:
    status, reply = await call(client, STAT, {"bucket": "data", "key": "nope"})
    assert (status, reply["code"]) == (404, "NoSuchKey")
    status, reply = await call(client, STAT, {"bucket": "nobucket", "key": "k"})
    assert (status, reply["code"]) == (404, "NoSuchBucket")
    status, reply = await call(client, STAT, {"bucket": "data", "key": "nope"})
    assert store.calls["head"] == 3  # misses are not cached


async def test_list_pages_and_warms_the_stat_cache(client: Client, store: FakeStore) -> None:
    status, page = await call(client, LIST, {"bucket": "data", "delimiter": "/"})
    assert status == 200
    assert [e["key"] for e in page["entries"]] == ["a.bin"]
    assert page["prefixes"] == ["dir/"]
    status, page = await call(client, LIST, {"bucket": "data", "prefix": "dir/", "max_keys": 1})
    assert [e["key"] for e in page["entries"]] == ["dir/b.bin"] and page["truncated"] is True

    _, info = await call(client, STAT, {"bucket": "data", "key": "dir/b.bin"})
    assert (info["size"], info["block_size"]) == (5 * MiB, MiB)
    assert store.calls["head"] == 0
    status, reply = await call(client, LIST, {"bucket": "nobucket"})
    assert (status, reply["code"]) == (404, "NoSuchBucket")


async def test_buckets_and_head_bucket(client: Client) -> None:
    status, reply = await call(client, BUCKETS)
    assert status == 200
    assert [b["name"] for b in reply["buckets"]] == ["data", "empty"]
    assert await call(client, HEAD_BUCKET, {"bucket": "empty"}) == (200, {})
    status, reply = await call(client, HEAD_BUCKET, {"bucket": "nobucket"})
    assert (status, reply["code"]) == (404, "NoSuchBucket")


# ---- operations ----------------------------------------------------------------------


async def test_health_and_metrics(client: Client) -> None:
    await register(client, "w1", [bid(1), bid(2)])
    await call(client, STAT, {"bucket": "data", "key": "a.bin"})
    await call(client, HEARTBEAT, {"worker_id": "ghost"})
    resp = await client.get(HEALTH)
    assert resp.status == 200 and (await resp.json()) == {"status": "ok"}
    resp = await client.get(METRICS)
    assert resp.status == 200
    text = await resp.text()
    for name in (
        "pipecache_master_workers 1.0",
        "pipecache_master_blocks 2.0",
        "pipecache_master_requests_total",
        "pipecache_master_metadata_cache_total",
        'pipecache_ufs_requests_total{op="head"} 1.0',
        'route="/api/v1/heartbeat",status="404"',
        'route="/api/v1/register",status="200"',
    ):
        assert name in text
    resp = await client.get("/no/such/path")
    assert resp.status == 404
    assert 'route="unmatched",status="404"' in await (await client.get(METRICS)).text()


async def test_injected_store_is_not_closed(make_client: MakeClient, store: FakeStore) -> None:
    client = await make_client()
    await client.close()
    assert store.calls["close"] == 0


async def test_on_a_file_folder(tmp_path: Path) -> None:
    """The real open_understore path: the app opens and closes a file:// store itself."""
    pytest.importorskip("pipecache.client.ufs.local")
    (tmp_path / "bkt" / "dir").mkdir(parents=True)
    (tmp_path / "bkt" / "dir" / "x.txt").write_bytes(b"hello world")
    (tmp_path / "bkt" / "top.txt").write_bytes(b"")
    app = make_app(settings(ufs=tmp_path.as_uri(), block_size=64 * 1024))
    async with TestClient(TestServer(app)) as client:
        status, info = await call(client, STAT, {"bucket": "bkt", "key": "dir/x.txt"})
        assert status == 200, info
        assert (info["size"], info["block_size"]) == (11, 64 * 1024) and info["etag"]
        status, reply = await call(client, STAT, {"bucket": "bkt", "key": "missing"})
        assert (status, reply["code"]) == (404, "NoSuchKey")
        _, reply = await call(client, BUCKETS)
        assert [b["name"] for b in reply["buckets"]] == ["bkt"]
        _, page = await call(client, LIST, {"bucket": "bkt", "delimiter": "/"})
        assert [e["key"] for e in page["entries"]] == ["top.txt"]
        assert page["prefixes"] == ["dir/"]
        assert await call(client, HEAD_BUCKET, {"bucket": "bkt"}) == (200, {})

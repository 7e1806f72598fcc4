"""Load tasks from heartbeat replies: fetched through the miss path, failures kept for the master."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from pipecache.client.protocol import Command, LoadTask
from pipecache.tiering.errors import NoSuchKey
from pipecache.worker.heartbeat import Heartbeat


class FakeStore:
    def __init__(self) -> None:
        self.blocks: set[str] = set()

    def tier_of(self, block_id: str) -> str | None:
        return "memory" if block_id in self.blocks else None


class FakeService:
    """Just what load tasks touch: ``store.tier_of`` and ``fetch``."""

    def __init__(self) -> None:
        self.store = FakeStore()
        self.fetched: list[str] = []
        self.gate = asyncio.Event()

    async def fetch(self, block_id: str, ref: Any) -> bytes:
        await self.gate.wait()
        self.fetched.append(block_id)
        if ref.key == "gone":
            raise NoSuchKey(f"{ref.bucket}/{ref.key}")
        if ref.key != "unkept":
            self.store.blocks.add(block_id)
        return b"x"


def task(key: str, size: int = 10) -> LoadTask:
    return LoadTask("b", key, "e", size, 10, 0)


async def test_loads_fetch_skip_and_report_failures() -> None:
    svc = FakeService()
    async with aiohttp.ClientSession() as session:
        hb = Heartbeat(
            svc,  # type: ignore[arg-type]
            session, master="http://unused", worker_id="w", address="http://w", timeout=1,
            retry_max=1, load_concurrency=2,
        )
        held = task("held")
        svc.store.blocks.add(held.ref().block_id())
        loads = [task("a"), task("a"), task("gone"), task("unkept"), held, task("empty", 0)]
        await hb._execute([Command("load", [t.ref().block_id() for t in loads], loads)])
        assert len(hb._loads) == 5  # the duplicate joined the first
        svc.gate.set()
        await asyncio.gather(*hb._loads.values())
        assert sorted(svc.fetched) == sorted(task(k).ref().block_id() for k in ("a", "gone", "unkept"))
        assert hb._load_failed == {
            task("gone").ref().block_id(): "NoSuchKey: b/gone",
            task("unkept").ref().block_id(): "fetched but not kept (no capacity)",
        }
        await hb.close()


async def test_half_a_load_batch_done_calls_for_an_early_beat() -> None:
    svc = FakeService()
    svc.gate.set()
    gates = {f"k{i}": asyncio.Event() for i in range(4)}
    plain = svc.fetch

    async def fetch(block_id: str, ref: Any) -> bytes:
        await gates[ref.key].wait()
        return await plain(block_id, ref)

    svc.fetch = fetch  # type: ignore[method-assign]
    async with aiohttp.ClientSession() as session:
        hb = Heartbeat(
            svc,  # type: ignore[arg-type]
            session, master="http://unused", worker_id="w", address="http://w", timeout=1,
            retry_max=1, load_concurrency=4,
        )
        loads = [task(k) for k in gates]
        await hb._execute([Command("load", [t.ref().block_id() for t in loads], loads)])
        assert hb._batch == 4 and not hb._soon.is_set()

        async def finish(key: str) -> None:
            gates[key].set()
            await hb._loads[task(key).ref().block_id()]
            await asyncio.sleep(0)  # the done callback

        await finish("k0")  # one of four: the beat can wait for its interval
        assert not hb._soon.is_set()
        await finish("k1")  # half: the master should hear of it now, and send more
        assert hb._soon.is_set()
        for key in ("k2", "k3"):
            await finish(key)
        await hb.close()

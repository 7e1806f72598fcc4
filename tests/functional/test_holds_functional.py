"""Pins, protection, free and TTL on a real cluster under eviction pressure.

One worker with a tiny memory tier (4 blocks) and SSD tier (10 blocks), so a
few dozen one-block objects overflow the node and every read decides what
stays. Holds outlive a test only if it forgets to release them, so each test
releases its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
from cluster import PcCluster
from pipecache.client import Client, NoSuchHold, connect

KiB = 1024
BS = 64 * KiB
BUCKET = "holds"
NOISE = 40
UFS_BYTES = "pipecache_ufs_read_bytes_total"
PINNED = "pipecache_worker_pinned_blocks"


@pytest.fixture(scope="module")
def small(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcCluster]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    objects = {f"noise/n-{i:03d}": os.urandom(BS) for i in range(NOISE)}
    objects["pinned/big"] = os.urandom(6 * BS)  # larger than the memory tier
    objects["pinned/small"] = os.urandom(2 * BS)
    for d in ("free", "ttl", "rel", "keep", "job", "count"):
        objects.update({f"{d}/o-{i}": os.urandom(BS) for i in range(3)})
    for k, v in objects.items():
        s3.put_object(Bucket=BUCKET, Key=k, Body=v)
    c = PcCluster(
        ufs=moto_server,
        root=tmp_path_factory.mktemp("holds"),
        block_size="64KiB",
        memory="256KiB",
        ssd="704KiB",
        n_workers=1,
    )
    try:
        yield c.start()
    finally:
        c.stop()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def block_ids(pc: Client, *keys: str) -> list[str]:
    out: list[str] = []
    for key in keys:
        info = await pc.stat(BUCKET, key)
        out.extend(info.block_id(i) for i in range(-(-info.size // info.block_size)))
    return out


async def resident(pc: Client, ids: list[str]) -> int:
    return len(await pc.locate(ids))


async def pressure(pc: Client, rounds: int = 1) -> None:
    """Read every noise object: several times what the node holds."""
    for _ in range(rounds):
        for i in range(NOISE):
            await pc.get(BUCKET, f"noise/n-{i:03d}")


async def pinned_on_worker(cluster: PcCluster, n: int) -> None:
    await eventually(lambda: asyncio.sleep(0, cluster.worker_sum(PINNED) == n))


async def test_pins_survive_pressure_and_reads_stay_hits(small: PcCluster) -> None:
    async with connect(small.master) as pc:
        data = await pc.get(BUCKET, "pinned/small")
        info = await pc.pin("s3://holds/pinned/small")
        assert (info.name, info.kind, info.blocks) == ("s3://holds/pinned/small", "pin", 2)
        assert info.expires is None
        ids = await block_ids(pc, "pinned/small")
        await pinned_on_worker(small, 2)
        noise = await block_ids(pc, *(f"noise/n-{i:03d}" for i in range(NOISE)))
        await pressure(pc, rounds=2)
        await asyncio.sleep(0.5)  # the last evictions reach the master
        assert await resident(pc, ids) == 2
        assert await resident(pc, noise) < NOISE // 2  # the pressure was real
        ufs, hits = small.worker_sum(UFS_BYTES), small.worker_sum("pipecache_cache_hit_bytes_total")
        assert await pc.get(BUCKET, "pinned/small") == data
        assert small.worker_sum(UFS_BYTES) == ufs  # served from the cache
        assert small.worker_sum("pipecache_cache_hit_bytes_total") == hits + len(data)
        (listed,) = [h for h in await pc.holds() if h.name == info.name]
        assert listed.resident_blocks == listed.blocks == 2
        done = await pc.unpin(info.name)
        assert done.state == "released"
        await pinned_on_worker(small, 0)
        with pytest.raises(NoSuchHold):
            await pc.unpin(info.name)


async def test_pin_bigger_than_memory_is_demoted_not_evicted(small: PcCluster) -> None:
    async with connect(small.master) as pc:
        await pc.pin(["s3://holds/pinned/big"], name="big")  # before it is read: pinned on arrival
        await asyncio.sleep(0.5)  # the pin reaches the worker with its next beat
        await pc.get(BUCKET, "pinned/big")
        ids = await block_ids(pc, "pinned/big")
        await pinned_on_worker(small, 6)
        await pressure(pc)
        await asyncio.sleep(0.5)
        assert await resident(pc, ids) == 6
        ssd = small.worker_sum("pipecache_worker_pinned_bytes", tier="ssd")
        assert ssd >= 2 * BS  # 6 blocks pinned, 4 fit in memory: the rest went to SSD
        await pc.release("big")
        await pinned_on_worker(small, 0)


async def test_restarted_worker_gets_its_pins_back(small: PcCluster) -> None:
    async with connect(small.master) as pc:
        await pc.pin("s3://holds/pinned/big", name="big-again")
        await asyncio.sleep(0.5)  # pinned ahead of arrival where missing (the last test released it)
        await pc.get(BUCKET, "pinned/big")
        ids = await block_ids(pc, "pinned/big")
        await pinned_on_worker(small, 6)
        await pressure(pc)  # pushes pinned blocks out of memory, onto SSD
        await asyncio.sleep(0.5)
        (w,) = small.workers
        small.stop_worker(w)
        small.start_worker(w)
        # Memory is gone; the SSD blocks are reported, and the master pins them again.
        await eventually(lambda: asyncio.sleep(0, small.worker_sum(PINNED) >= 2), timeout=15)
        on_ssd = small.worker_sum(PINNED)
        await asyncio.sleep(0.5)
        assert await resident(pc, ids) == on_ssd
        await pressure(pc)
        await asyncio.sleep(0.5)
        assert await resident(pc, ids) >= on_ssd  # (re-read blocks are pinned on arrival too)
        await pc.unpin("big-again")


async def test_free_drops_blocks_and_refuses_pinned_ones(small: PcCluster) -> None:
    async with connect(small.master) as pc:
        for i in range(3):
            await pc.get(BUCKET, f"free/o-{i}")
        await asyncio.sleep(0.5)
        keep = await block_ids(pc, "free/o-2")
        drop = await block_ids(pc, "free/o-0", "free/o-1")
        assert await resident(pc, keep + drop) == 3
        await pc.pin("s3://holds/free/o-2", name="free-keep")
        reply = await pc.free("s3://holds/free/")
        assert (reply.freed, reply.refused) == (2, 1)
        await eventually(lambda: _none(pc, drop))
        assert await resident(pc, keep) == 1
        reply = await pc.free(["s3://holds/free/"], force=True)
        assert (reply.freed, reply.refused) == (1, 0)
        await eventually(lambda: _none(pc, keep))
        await pc.unpin("free-keep")


async def _none(pc: Client, ids: list[str]) -> bool:
    return await resident(pc, ids) == 0


async def test_ttl_frees_at_expiry(small: PcCluster) -> None:
    async with connect(small.master) as pc:
        for i in range(3):
            await pc.get(BUCKET, f"ttl/o-{i}")
        ids = await block_ids(pc, *(f"ttl/o-{i}" for i in range(3)))
        await asyncio.sleep(0.5)
        assert await resident(pc, ids) == 3
        info = await pc.set_ttl("s3://holds/ttl/", 1.5)
        assert info.kind == "ttl" and info.blocks == 3 and info.expires is not None
        assert info.expires - time.time() == pytest.approx(1.5, abs=1.0)
        assert any(h.kind == "ttl" for h in await pc.holds())
        await asyncio.sleep(0.5)
        assert await resident(pc, ids) == 3  # not yet
        await eventually(lambda: _none(pc, ids))
        assert not any(h.kind == "ttl" for h in await pc.holds())


async def test_released_blocks_go_first(small: PcCluster) -> None:
    async with connect(small.master) as pc:
        await pressure(pc)  # the node is full
        for i in range(2):
            await pc.get(BUCKET, f"keep/o-{i}")
        for i in range(2):
            await pc.get(BUCKET, f"rel/o-{i}")  # more recent than keep/: LRU would keep these
        keep = await block_ids(pc, "keep/o-0", "keep/o-1")
        rel = await block_ids(pc, "rel/o-0", "rel/o-1")
        await pc.protect("step-1", ["s3://holds/rel/o-0", "s3://holds/rel/o-1"])
        await pinned_on_worker(small, 2)
        info = await pc.release("step-1")
        assert (info.state, info.kind, info.blocks) == ("released", "protect", 2)
        await pinned_on_worker(small, 0)
        await asyncio.sleep(0.3)  # the release command is applied with the unpin
        for i in range(2):
            await pc.get(BUCKET, f"noise/n-{i:03d}")
        await asyncio.sleep(0.5)
        assert await resident(pc, rel) == 0
        assert await resident(pc, keep) == 2


async def test_load_with_a_hold_lands_pinned(small: PcCluster) -> None:
    async with connect(small.master) as pc:
        job = await pc.load(["s3://holds/job/"], priority=3, hold="run-7")
        assert (await job.wait(interval=0.1, timeout=20)).state == "done"
        ids = await block_ids(pc, *(f"job/o-{i}" for i in range(3)))
        (h,) = [h for h in await pc.holds() if h.name == "run-7"]
        assert (h.kind, h.blocks, h.resident_blocks) == ("protect", 3, 3)
        await pressure(pc, rounds=2)
        await asyncio.sleep(0.5)
        assert await resident(pc, ids) == 3
        await pc.release("run-7")
        await pinned_on_worker(small, 0)


async def test_a_hold_counts_the_reads_of_its_blocks(small: PcCluster) -> None:
    async with connect(small.master) as pc:
        job = await pc.load(["s3://holds/count/o-0", "s3://holds/count/o-1"], hold="step-9")
        assert (await job.wait(interval=0.1, timeout=20)).state == "done"
        # o-2 joins the hold without a load: pinned (and tagged) ahead of its first read.
        await pc.protect("step-9", "s3://holds/count/o-2")
        await pc.protect("step-10", "s3://holds/count/o-1")  # o-1's reads count for both holds
        await asyncio.sleep(0.5)  # the tagged pins reach the worker with its next beat
        for key in ("o-0", "o-1", "o-2", "o-2"):  # o-2: a miss, then a hit
            await pc.get(BUCKET, f"count/{key}")
        await pc.get(BUCKET, "noise/n-039")  # held by no hold: counts for none

        async def counted() -> bool:
            holds = {h.name: (h.reads, h.hits) for h in await pc.holds()}
            return holds.get("step-9") == (4, 3) and holds.get("step-10") == (1, 1)

        await eventually(counted)
        done = await pc.release("step-9")
        assert (done.reads, done.hits, done.hit_ratio) == (4, 3, 0.75)
        await pc.release("step-10")
        await pinned_on_worker(small, 0)


async def test_a_node_full_of_pins_still_serves_reads(small: PcCluster) -> None:
    async with connect(small.master) as pc:
        await pc.pin(["s3://holds/noise/n-00", "s3://holds/noise/n-01"], name="fill")  # 20 blocks
        await asyncio.sleep(0.5)
        await pressure(pc)
        noise = await block_ids(pc, *(f"noise/n-{i:03d}" for i in range(20)))
        await asyncio.sleep(0.5)
        held = await resident(pc, noise)
        assert 12 <= held <= 14  # the node holds 14 blocks: all of them pinned now
        ids = await block_ids(pc, "ttl/o-0")
        ufs = small.worker_sum(UFS_BYTES)
        for _ in range(2):
            assert len(await pc.get(BUCKET, "ttl/o-0")) == BS
        assert small.worker_sum(UFS_BYTES) == ufs + 2 * BS  # served, but not admitted
        await asyncio.sleep(0.5)
        assert await resident(pc, ids) == 0 and await resident(pc, noise) == held
        await pc.release("fill")
        await pinned_on_worker(small, 0)


def test_cli_verbs(small: PcCluster) -> None:
    async def read_keep() -> None:
        async with connect(small.master) as pc:
            for i in range(3):
                await pc.get(BUCKET, f"keep/o-{i}")
            ids = await block_ids(pc, *(f"keep/o-{i}" for i in range(3)))
            await asyncio.sleep(0.5)  # the additions reach the master
            assert await resident(pc, ids) == 3

    asyncio.run(read_keep())
    r = small.cli("pin", "s3://holds/keep/o-2", "--ttl", "600", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["name"], info["kind"], info["blocks"]) == ("s3://holds/keep/o-2", "pin", 1)
    assert info["expires"] == pytest.approx(time.time() + 600, abs=30)
    r = small.cli("pin", "s3://holds/keep/", "--name", "keep-all")
    assert r.returncode == 0 and r.stdout.startswith("active: keep-all  pin  ") and "/3 blocks" in r.stdout
    r = small.cli("pins", "--json")
    names = {h["name"]: h for h in json.loads(r.stdout)["holds"]}
    assert {"s3://holds/keep/o-2", "keep-all"} <= set(names)
    r = small.cli("pins")
    assert "keep-all  pin  " in r.stdout and "expires never" in r.stdout and "(in 9m" in r.stdout
    r = small.cli("free", "s3://holds/keep/", "--json")
    assert json.loads(r.stdout) == {"freed": 0, "refused": 3}
    r = small.cli("free", "s3://holds/keep/")
    assert r.stdout.strip() == (
        "freeing 0 cached blocks; kept 3 pinned or protected blocks (use --force to drop them too)"
    )
    r = small.cli("ttl", "s3://holds/keep/o-0", "s3://holds/keep/o-1", "3600", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kind"] == "ttl"
    for name in ("s3://holds/keep/o-2", "keep-all"):
        r = small.cli("unpin", name, "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["state"] == "released"
    r = small.cli("unpin", "keep-all")
    assert r.returncode == 1 and "NoSuchHold" in r.stderr
    r = small.cli("pin", "s3://no-such-bucket-holds/x")
    assert r.returncode == 1 and "NoSuchBucket" in r.stderr
    r = small.cli("ttl", "s3://holds/keep/", "-5")
    assert r.returncode == 2

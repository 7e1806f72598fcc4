"""Load jobs on a real cluster: the master lists, workers fetch, heartbeats complete the job."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from cluster import PcCluster, gateway_client, metric_sum
from pipecache.client import NoSuchJob, connect

MiB = 1024 * 1024
UFS_BYTES = "pipecache_ufs_read_bytes_total"


def seed(s3, bucket: str, objects: dict[str, bytes]) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket=bucket)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), objects.items()))


@pytest.fixture(scope="module")
def dataset(moto_server: str) -> dict[str, bytes]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    objects = {f"train/small-{i:03d}": os.urandom(100 + i) for i in range(200)}
    objects.update({f"train/big-{i}": os.urandom(2 * MiB + 1000 * i + 1) for i in range(3)})
    objects["train/empty"] = b""
    objects["other/not-loaded"] = b"x"
    seed(s3, "preload", objects)
    return {k: v for k, v in objects.items() if k.startswith("train/")}


async def test_load_makes_every_read_a_hit(cluster: PcCluster, dataset: dict[str, bytes], gw) -> None:  # type: ignore[no-untyped-def]
    async with connect(cluster.master) as pc:
        job = await pc.load("s3://preload/train/", priority=1)
        assert job.last.state in ("listing", "running")
        seen = [info async for info in job.progress(interval=0.2)]
        final = seen[-1]
        assert final.state == "done", final
        assert final.objects_total == final.objects_done == len(dataset)
        assert final.bytes_total == final.bytes_done == sum(len(v) for v in dataset.values())
        assert final.blocks_total == final.blocks_resident == 200 + 3 * 3
        assert final.failed == [] and final.eta_seconds == 0.0
        assert all(a.blocks_resident <= b.blocks_resident for a, b in zip(seen, seen[1:], strict=False))
        assert (await job.wait()).state == "done"
        assert any(j.id == job.id and j.state == "done" for j in await pc.jobs())

    before = cluster.worker_sum(UFS_BYTES)
    loop = asyncio.get_running_loop()

    def read(key: str) -> bytes:
        body: bytes = gw.get_object(Bucket="preload", Key=key)["Body"].read()
        return body

    with ThreadPoolExecutor(8) as pool:
        bodies = await asyncio.gather(*(loop.run_in_executor(pool, read, k) for k in dataset))
    assert dict(zip(dataset, bodies, strict=True)) == dataset
    assert cluster.worker_sum(UFS_BYTES) == before  # every block was a hit


async def test_load_again_finds_everything_resident(cluster: PcCluster, dataset: dict[str, bytes]) -> None:
    async with connect(cluster.master) as pc:
        job = await pc.load("s3://preload/train/small-00")  # a prefix that is not a key
        info = await job.wait(interval=0.1, timeout=20)
        assert (info.state, info.objects_total) == ("done", 10)
        assert info.blocks_resident == info.blocks_total == 10
        single = await (await pc.load("preload/train/big-1")).wait(interval=0.1, timeout=20)
        assert (single.state, single.objects_total, single.blocks_total) == ("done", 1, 3)


async def test_missing_bucket_fails_the_job(cluster: PcCluster) -> None:
    async with connect(cluster.master) as pc:
        info = await (await pc.load("s3://no-such-bucket-here/x/")).wait(interval=0.1, timeout=20)
        assert info.state == "failed" and info.reason.startswith("NoSuchBucket")
        with pytest.raises(NoSuchJob):
            await pc.job("job-nope").info()


async def test_cancel_stops_a_job(cluster: PcCluster, s3) -> None:  # type: ignore[no-untyped-def]
    n = 500
    seed(s3, "preload-cancel", {f"k/{i:04d}": os.urandom(64) for i in range(n)})
    async with connect(cluster.master) as pc:
        listing = await pc.load("s3://preload-cancel/k/")
        assert (await listing.cancel()).state == "cancelled"  # cancelled while listing
        job = await pc.load("s3://preload-cancel/k/")
        async with contextlib.aclosing(job.progress(interval=0.05)) as updates:
            async for info in updates:  # wait until blocks are landing
                if info.blocks_resident:
                    break
        info = await job.cancel()
        assert info.state == "cancelled" and info.blocks_total == n
        await asyncio.sleep(1.0)  # tasks already sent (at most the in-flight bound) may land
        first = cluster.worker_sum(UFS_BYTES)
        await asyncio.sleep(1.0)
        assert cluster.worker_sum(UFS_BYTES) == first  # nothing more is fetched
        info = await job.info()
        assert info.state == "cancelled" and info.blocks_resident < n
        assert (await listing.info()).state == "cancelled"


def pipecache(cluster: PcCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return cluster.cli(*args)


def test_cli_load_wait_and_jobs(cluster: PcCluster, dataset: dict[str, bytes]) -> None:
    r = pipecache(cluster, "load", "s3://preload/train/big-", "--wait", "--json", "--interval", "0.1")
    assert r.returncode == 0, r.stderr
    final = json.loads(r.stdout)
    assert (final["state"], final["objects_total"], final["blocks_resident"]) == ("done", 3, 9)
    r = pipecache(cluster, "jobs", "--json")
    assert r.returncode == 0, r.stderr
    assert final["id"] in {j["id"] for j in json.loads(r.stdout)["jobs"]}
    r = pipecache(cluster, "jobs")
    assert final["id"] in r.stdout and "100.0%" in r.stdout
    r = pipecache(cluster, "load", "s3://preload/other/", "--wait")  # plain lines: not a TTY
    assert r.returncode == 0 and " done " in r.stdout
    r = pipecache(cluster, "load", "s3://no-such-bucket-cli/", "--wait")
    assert r.returncode == 1 and "NoSuchBucket" in r.stderr
    r = pipecache(cluster, "cancel", final["id"])
    assert r.returncode == 0 and "done" in r.stdout  # a finished job stays as it is


@pytest.fixture(scope="module")
def ttl_cluster(moto_server: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A cluster whose master trusts metadata for a minute (the test cluster's is 1 s)."""
    args = ("--heartbeat-interval", "0.2", "--worker-timeout", "3", "--consistency", "ttl=60")
    c = PcCluster(ufs=moto_server, root=tmp_path_factory.mktemp("meta"), n_workers=1, master_args=args)
    try:
        yield c.start()
    finally:
        c.stop()


async def test_a_preloaded_object_is_read_without_asking_the_under_store(ttl_cluster: PcCluster, s3) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="meta")
    for i in range(20):
        s3.put_object(Bucket="meta", Key=f"p/{i}.json", Body=b"{}", ContentType="application/json",
                      Metadata={"n": str(i)})  # fmt: skip
    async with connect(ttl_cluster.master) as pc:
        assert (await (await pc.load("s3://meta/p/")).wait()).state == "done"
    heads = lambda: metric_sum(ttl_cluster.master, "pipecache_ufs_requests_total", op="head")  # noqa: E731
    deadline = asyncio.get_running_loop().time() + 10
    while heads() < 20:  # the job fetches its objects' full metadata beside the blocks
        assert asyncio.get_running_loop().time() < deadline, f"{heads()} HEADs after the load"
        await asyncio.sleep(0.1)
    before = heads()
    gw = gateway_client(ttl_cluster)
    for i in range(20):
        got = gw.get_object(Bucket="meta", Key=f"p/{i}.json")
        assert got["ContentType"] == "application/json" and got["Metadata"] == {"n": str(i)}
    assert heads() == before, "a read of a preloaded object waited on an under-store HEAD"

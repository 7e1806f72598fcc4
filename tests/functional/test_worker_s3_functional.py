"""A worker that also serves the S3 API (``worker --s3-port``).

Blocks that placement gives to that worker are read from its own store,
without HTTP; the other worker's blocks still come over HTTP. Both must give
the same bytes as the under-store, from memory, from SSD and on a miss.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from cluster import ACCESS_KEY, SECRET_KEY, PcCluster, Worker, free_port, make_bucket, metric_sum
from pipecache.client import connect

MiB = 1024 * 1024
BUCKET = "worker-s3"


@pytest.fixture(scope="module")
def local_s3(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PcCluster, str]]:
    """Two workers (1 MiB blocks, 4 MiB of memory each); worker 1 also serves S3."""
    c = PcCluster(ufs=moto_server, root=tmp_path_factory.mktemp("worker-s3"), n_workers=1, memory="4MiB")
    c.start()
    s3_port = free_port()
    keys = ("--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY)
    w = Worker(1, free_port(), c.root / "worker-1", args=("--s3-port", str(s3_port), *keys))
    c.workers.append(w)
    try:
        c.start_worker(w)
        c.wait_workers(2)
        yield c, f"http://127.0.0.1:{s3_port}"
    finally:
        c.stop()


def _client(url: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def _key_on(c: PcCluster, worker_id: str, gw, s3) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    """A one-block object, read once through ``gw``, whose block placement gave to ``worker_id``."""

    async def holders(key: str) -> list[str]:
        async with connect(c.master) as pc:
            bid = (await pc.stat(BUCKET, key)).block_id(0)
            for _ in range(50):  # the master learns of the block at the worker's next heartbeat
                found = (await pc.locate([bid])).get(bid)
                if found:
                    return found
                await asyncio.sleep(0.1)
        raise AssertionError(f"{key}: no worker reported its block")

    run = os.urandom(4).hex()  # fresh keys: an overwrite would be a change behind the cache's back
    for i in range(20):  # each key lands on the worker with odds 1/2
        key, data = f"one-block-{run}-{i}", os.urandom(MiB // 2)
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        assert gw.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
        if worker_id in asyncio.run(holders(key)):
            return key, data
    raise AssertionError(f"no key of 20 placed on {worker_id}")


def test_reads_through_the_workers_own_s3_endpoint(local_s3: tuple[PcCluster, str], s3) -> None:  # type: ignore[no-untyped-def]
    c, url = local_s3
    make_bucket(s3, BUCKET)
    data = os.urandom(24 * MiB + 12345)
    s3.put_object(Bucket=BUCKET, Key="big.bin", Body=data)
    s3.put_object(Bucket=BUCKET, Key="empty", Body=b"")
    gw = _client(url)
    local, other = c.workers[1], c.workers[0]
    for _ in range(3):  # a miss, then hits from memory and (4 MiB of memory each) SSD
        body = gw.get_object(Bucket=BUCKET, Key="big.bin")["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    part = gw.get_object(Bucket=BUCKET, Key="big.bin", Range="bytes=1048000-5243000")["Body"].read()
    assert part == data[1048000:5243001]
    assert gw.get_object(Bucket=BUCKET, Key="empty")["Body"].read() == b""
    key, small = _key_on(c, "w1", gw, s3)
    assert gw.get_object(Bucket=BUCKET, Key=key)["Body"].read() == small  # from memory
    # The local worker served bytes of every kind without a single HTTP block request...
    for tier in ("memory", "ssd"):
        assert metric_sum(local.url, "pipecache_cache_hit_bytes_total", tier=tier) > 0, tier
    assert metric_sum(local.url, "pipecache_cache_miss_bytes_total") > 0
    assert metric_sum(local.url, "pipecache_worker_requests_total") == 0
    # ...while the other worker's blocks came over HTTP.
    assert metric_sum(other.url, "pipecache_worker_requests_total") > 0


def test_a_corrupt_local_block_is_fetched_again(local_s3: tuple[PcCluster, str], s3) -> None:  # type: ignore[no-untyped-def]
    c, url = local_s3
    make_bucket(s3, BUCKET)
    data = os.urandom(10 * MiB)
    s3.put_object(Bucket=BUCKET, Key="corrupt.bin", Body=data)
    gw = _client(url)
    gw.get_object(Bucket=BUCKET, Key="corrupt.bin")["Body"].read()
    # Memory holds 4 MiB: reading another 32 MiB (about 16 blocks land on each worker,
    # fewer than 4 about once in a million runs) pushes these blocks to SSD.
    s3.put_object(Bucket=BUCKET, Key="filler.bin", Body=os.urandom(32 * MiB))
    gw.get_object(Bucket=BUCKET, Key="filler.bin")["Body"].read()
    files = [p for p in (c.workers[1].data_dir).rglob("*") if p.is_file() and p.stat().st_size > MiB // 2]
    assert files, "no SSD block files on the local worker"
    for p in files:
        raw = bytearray(p.read_bytes())
        raw[-1] ^= 0xFF
        p.write_bytes(bytes(raw))
    body = gw.get_object(Bucket=BUCKET, Key="corrupt.bin")["Body"].read()
    assert body == data
    assert metric_sum(c.workers[1].url, "pipecache_worker_corrupt_blocks_total") > 0


def test_local_reads_count_for_the_holds_of_their_blocks(local_s3: tuple[PcCluster, str], s3) -> None:  # type: ignore[no-untyped-def]
    c, url = local_s3
    make_bucket(s3, BUCKET)
    gw = _client(url)
    key, data = _key_on(c, "w1", gw, s3)  # read once, before any hold: counted for none

    async def protect_then_count() -> tuple[int, int]:
        async with connect(c.master) as pc:
            await pc.protect("local-step", f"s3://{BUCKET}/{key}")
            await asyncio.sleep(0.6)  # the tagged pin reaches the worker with its next beat
            body = await asyncio.to_thread(lambda: gw.get_object(Bucket=BUCKET, Key=key)["Body"].read())
            assert body == data
            for _ in range(50):  # the counts reach the master with the worker's next beat
                (info,) = [h for h in await pc.holds() if h.name == "local-step"]
                if info.reads:
                    break
                await asyncio.sleep(0.1)
            await pc.release("local-step")
            return info.reads, info.hits

    assert asyncio.run(protect_then_count()) == (1, 1)  # served from the local store, a hit

"""Block reads from real workers through the lean fetcher and through aiohttp: the same bytes.

The key is chosen so that its query encoding differs between encoders (space,
plus, percent, slash, non-ASCII): the worker recomputes the block id from the
query, so a mis-encoded key is a 400, not a silent mismatch.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
from cluster import PcCluster, make_bucket
from pipecache.client import NoSuchKey, Range, connect

MiB = 1024 * 1024
KEY = "dir with space/a+b%20c&d=e?f#g/ünï.bin"


@pytest.fixture(scope="module")
def obj(moto_server: str) -> bytes:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    make_bucket(s3, "lean")
    data = os.urandom(3 * MiB + 12345)
    s3.put_object(Bucket="lean", Key=KEY, Body=data)
    return data


@pytest.mark.parametrize("lean", [True, False])
async def test_whole_and_ranged_reads_match(cluster: PcCluster, obj: bytes, lean: bool) -> None:
    async with connect(cluster.master, lean_blocks=lean) as pc:
        assert await pc.get("lean", KEY) == obj
        for start, end in [(0, 1), (MiB - 3, MiB + 3), (2 * MiB + 7, None), (len(obj) - 1, None)]:
            assert await pc.get("lean", KEY, Range(start, end)) == obj[start:end]
        async with pc.open("lean", KEY) as reader:
            spans = [await reader.next_span() for _ in range(4)]
        assert b"".join(c for s in spans for c in s) == obj
        if lean:
            # One buffer per span, straight from the socket, on pooled connections.
            assert all(len(s) == 1 and isinstance(s[0], bytearray) for s in spans)
            assert pc._blocks is not None and 0 < pc._blocks.connections <= len(cluster.workers) * 4
        else:
            assert pc._blocks is None


async def test_missing_block_is_the_same_typed_error_both_ways(cluster: PcCluster, obj: bytes) -> None:
    for lean in (True, False):
        async with connect(cluster.master, lean_blocks=lean) as pc:
            info = await pc.stat("lean", KEY)
            gone = dataclasses.replace(info, key=KEY + ".missing")
            with pytest.raises(NoSuchKey):
                async with pc.open("lean", gone.key, info=gone) as reader:
                    await reader.next_span()

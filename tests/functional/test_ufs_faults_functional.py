"""The S3 under-store's ranged reads against a stalling or cutting link to a real S3 server (moto).

A TCP proxy (tests/faultproxy.py) sits between ``S3UnderStore`` and moto. A read
must return the whole, right range or raise UnderStoreError within its bound
(attempts x read timeout, plus backoff): never hang, never return a short body.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pipecache.client.ufs import S3UnderStore, UnderStoreTimeouts
from pipecache.tiering.errors import UnderStoreError

sys.path.insert(0, str(Path(__file__).parents[1]))
from faultproxy import FaultProxy  # noqa: E402

MiB = 1024 * 1024
READ = 0.5
ATTEMPTS = 3
BODY = os.urandom(2 * MiB)

in_module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def bucket(moto_server: str) -> str:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    name = f"ufsfault-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="obj", Body=BODY)
    return name


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def store(ufs_proxy: FaultProxy) -> AsyncIterator[S3UnderStore]:
    st = S3UnderStore(ufs_proxy.url, timeouts=UnderStoreTimeouts(read=READ, attempts=ATTEMPTS))
    yield st
    await st.close()


@pytest.fixture(autouse=True)
def passing(ufs_proxy: FaultProxy) -> Iterator[None]:
    ufs_proxy.set("pass")
    yield
    ufs_proxy.set("pass")


def counts(p: FaultProxy) -> tuple[int, int, int]:
    return p.accepted, p.stalls, p.cuts


@in_module_loop
@pytest.mark.parametrize(("mode", "cut_after"), [("stall", 0), ("stall", 300 * 1024), ("cut", 300 * 1024)])
async def test_one_failed_read_is_retried_to_the_right_bytes(
    store: S3UnderStore, ufs_proxy: FaultProxy, bucket: str, mode: Any, cut_after: int
) -> None:
    """Stalled before the headers, stalled mid-body, or cut mid-body: once, then the link heals."""
    await store.head(bucket, "obj")  # a pooled connection, dropped by the switch below
    ufs_proxy.set(mode, cut_after=cut_after, times=1)
    accepted, stalls, cuts = counts(ufs_proxy)
    t0 = time.monotonic()
    got = await store.get_range(bucket, "obj", MiB, MiB)
    assert got == BODY[MiB:]
    assert ufs_proxy.accepted - accepted == 2, "the fault never hit: the test proved nothing"
    assert (ufs_proxy.stalls - stalls, ufs_proxy.cuts - cuts) == ((1, 0) if mode == "stall" else (0, 1))
    assert time.monotonic() - t0 < READ + 3


@in_module_loop
@pytest.mark.parametrize("cut_after", [0, 300 * 1024], ids=["before-headers", "mid-body"])
async def test_a_stalled_under_store_fails_within_the_bound(
    store: S3UnderStore, ufs_proxy: FaultProxy, bucket: str, cut_after: int
) -> None:
    await store.head(bucket, "obj")
    ufs_proxy.set("stall", cut_after=cut_after)
    stalls = ufs_proxy.stalls
    t0 = time.monotonic()
    with pytest.raises(UnderStoreError):
        await store.get_range(bucket, "obj", 0, MiB)
    elapsed = time.monotonic() - t0
    # Every attempt waited out one read timeout; the backoffs between add a little.
    assert ufs_proxy.stalls - stalls == ATTEMPTS
    assert ATTEMPTS * READ <= elapsed < ATTEMPTS * READ + 6, elapsed
    ufs_proxy.set("pass")
    assert await store.get_range(bucket, "obj", 0, MiB) == BODY[:MiB]

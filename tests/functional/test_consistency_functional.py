"""Consistency modes: an object replaced in the under-store behind the cache's back."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import BotoCoreError, ClientError
from cluster import PcCluster, gateway_client, make_bucket, metric_sum

MiB = 1024 * 1024
BUCKET = "consistency"


@pytest.fixture(scope="module", params=["ttl=1", "always", "immutable"])
def mode_cluster(request: pytest.FixtureRequest, moto_server: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    args = ("--heartbeat-interval", "0.2", "--worker-timeout", "3", "--consistency", request.param)
    c = PcCluster(ufs=moto_server, root=tmp_path_factory.mktemp("mode"), n_workers=1, master_args=args)
    try:
        yield request.param, c.start()
    finally:
        c.stop()


@pytest.fixture
def clients(mode_cluster, moto_server: str) -> Iterator[tuple]:  # type: ignore[no-untyped-def, type-arg]
    _, c = mode_cluster
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    make_bucket(s3, BUCKET)
    yield s3, gateway_client(c)


def read(gw, key: str) -> bytes | None:  # type: ignore[no-untyped-def]
    """The object's bytes, or None when the read failed (an error is allowed, wrong bytes are not)."""
    try:
        return bytes(gw.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    except (ClientError, BotoCoreError):
        return None


def test_changed_object_is_fresh_when_the_mode_says(mode_cluster, clients) -> None:  # type: ignore[no-untyped-def]
    mode, _ = mode_cluster
    s3, gw = clients
    old, new = os.urandom(MiB + 100), os.urandom(MiB + 100)  # same size: only the ETag tells them apart
    s3.put_object(Bucket=BUCKET, Key="swap.bin", Body=old)
    assert read(gw, "swap.bin") == old
    s3.put_object(Bucket=BUCKET, Key="swap.bin", Body=new)
    right_away = read(gw, "swap.bin")
    if mode == "always":
        assert right_away == new
    elif mode == "immutable":
        assert right_away == old  # trusted forever; whole old version from the cache
        time.sleep(2.5)
        assert read(gw, "swap.bin") == old
    else:
        assert right_away in (old, new)
        # ttl=1 at the master, and the gateway reuses metadata no longer than the master
        # still trusts it (fresh_for): fresh within 1 s of the first read, whatever the reuse.
        time.sleep(1.5)
        assert read(gw, "swap.bin") == new


def test_never_a_mix_of_versions(mode_cluster, clients) -> None:  # type: ignore[no-untyped-def]
    mode, _ = mode_cluster
    s3, gw = clients
    old, new = os.urandom(3 * MiB), os.urandom(3 * MiB)
    s3.put_object(Bucket=BUCKET, Key="mix.bin", Body=old)
    # Only the first block gets cached, then the object changes underneath.
    assert gw.get_object(Bucket=BUCKET, Key="mix.bin", Range="bytes=0-99")["Body"].read() == old[:100]
    s3.put_object(Bucket=BUCKET, Key="mix.bin", Body=new)
    for _ in range(3):
        got = read(gw, "mix.bin")
        assert got in (None, old, new), "a read mixed two versions"
    assert read(gw, "mix.bin") in ((new,) if mode == "always" else (None, old, new))


def test_always_serves_an_unchanged_object_from_the_cache(mode_cluster, clients) -> None:  # type: ignore[no-untyped-def]
    mode, c = mode_cluster
    if mode != "always":
        pytest.skip("checks the always mode's cost: one HEAD per open, no data re-read")
    s3, gw = clients
    body = os.urandom(2 * MiB)
    s3.put_object(Bucket=BUCKET, Key="same.bin", Body=body)
    assert read(gw, "same.bin") == body
    heads = metric_sum(c.master, "pipecache_ufs_requests_total", op="head")
    ufs_bytes = c.worker_sum("pipecache_ufs_read_bytes_total")
    for _ in range(3):
        assert read(gw, "same.bin") == body
    assert metric_sum(c.master, "pipecache_ufs_requests_total", op="head") - heads == 3
    assert c.worker_sum("pipecache_ufs_read_bytes_total") == ufs_bytes, "an unchanged object was re-read"

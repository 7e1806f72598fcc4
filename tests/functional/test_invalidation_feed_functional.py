"""Gateways follow the master's invalidation feed: a write through one gateway is seen
at once through another, while unchanged metadata is reused for the mode's whole TTL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from cluster import ACCESS_KEY, SECRET_KEY, PcCluster, gateway_client, make_bucket, metric_sum, s3_client

BUCKET = "feed"


@pytest.fixture(scope="module")
def two_gateways(
    moto_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PcCluster, str]]:
    args = ("--heartbeat-interval", "0.2", "--worker-timeout", "3", "--consistency", "ttl=60")
    c = PcCluster(ufs=moto_server, root=tmp_path_factory.mktemp("feed"), n_workers=1, master_args=args)
    c.start()
    try:
        with c.running_gateway("--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY) as url:
            yield c, url
    finally:
        c.stop()



def _stats(c: PcCluster) -> float:
    return metric_sum(c.master, "pipecache_master_requests_total", route="/api/v1/stat")


def test_a_write_through_one_gateway_is_read_at_once_through_another(two_gateways, s3) -> None:  # type: ignore[no-untyped-def]
    c, other_url = two_gateways
    make_bucket(s3, BUCKET)
    a, b = gateway_client(c), s3_client(other_url)
    a.put_object(Bucket=BUCKET, Key="k", Body=b"first")
    time.sleep(1.0)  # both gateways have found the feed
    for _ in range(3):
        assert b.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"first"
    for i in range(5):
        body = f"version {i}".encode()
        a.put_object(Bucket=BUCKET, Key="k", Body=body)
        # Without the feed the other gateway reused "first" for up to 2 s; now the
        # invalidation arrives within a round trip.
        deadline = time.monotonic() + 0.5
        while (got := b.get_object(Bucket=BUCKET, Key="k")["Body"].read()) != body:
            assert time.monotonic() < deadline, f"gateway B still served {got!r}"
            time.sleep(0.02)


def test_unchanged_metadata_is_reused_for_the_whole_ttl(two_gateways, s3) -> None:  # type: ignore[no-untyped-def]
    c, other_url = two_gateways
    make_bucket(s3, BUCKET)
    b = s3_client(other_url)
    s3.put_object(Bucket=BUCKET, Key="steady", Body=b"x" * 1000)
    assert b.get_object(Bucket=BUCKET, Key="steady")["Body"].read() == b"x" * 1000
    time.sleep(2.5)  # past the 2 s a gateway reuses metadata without the feed
    before = _stats(c)
    for _ in range(10):
        assert b.get_object(Bucket=BUCKET, Key="steady")["Body"].read() == b"x" * 1000
    assert _stats(c) == before, "the gateway asked the master again within the TTL"


def test_a_master_restart_makes_gateways_forget(two_gateways, s3) -> None:  # type: ignore[no-untyped-def]
    c, other_url = two_gateways
    make_bucket(s3, BUCKET)
    b = s3_client(other_url)
    s3.put_object(Bucket=BUCKET, Key="restart", Body=b"old")
    assert b.get_object(Bucket=BUCKET, Key="restart")["Body"].read() == b"old"
    c.stop_master()
    s3.put_object(Bucket=BUCKET, Key="restart", Body=b"new")  # behind the cache's back, while it is down
    c.start_master()
    # The feed was lost, then came back under another epoch: the gateway forgot what it
    # reused (for up to 60 s otherwise), asks again and reads "new".
    deadline = time.monotonic() + 15
    while (got := b.get_object(Bucket=BUCKET, Key="restart")["Body"].read()) != b"new":
        assert time.monotonic() < deadline, f"still {got!r} after the master restarted"
        time.sleep(0.2)

"""The S3 read path end to end: real clients -> gateway -> workers -> moto, all over HTTP."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import psutil
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cluster import ACCESS_KEY, PcCluster, make_bucket, metric_sum, metrics

MiB = 1024 * 1024


def test_get_head_and_second_read_from_cache(s3, gw, cluster: PcCluster) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "reads")
    body = os.urandom(3 * MiB + 12345)  # four 1 MiB blocks, the last one short
    s3.put_object(Bucket=b, Key="data/obj.bin", Body=body)

    head = gw.head_object(Bucket=b, Key="data/obj.bin")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == s3.head_object(Bucket=b, Key="data/obj.bin")["ETag"]

    ufs_before = cluster.worker_sum("pipecache_ufs_read_bytes_total")
    got = gw.get_object(Bucket=b, Key="data/obj.bin")["Body"].read()
    assert got == body
    ufs_first = cluster.worker_sum("pipecache_ufs_read_bytes_total")
    assert ufs_first - ufs_before == len(body)

    hits_before = cluster.worker_sum("pipecache_cache_hit_bytes_total")
    assert gw.get_object(Bucket=b, Key="data/obj.bin")["Body"].read() == body
    assert cluster.worker_sum("pipecache_ufs_read_bytes_total") == ufs_first, (
        "second read touched the under-store"
    )
    assert cluster.worker_sum("pipecache_cache_hit_bytes_total") - hits_before == len(body)


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 0), (MiB - 1, MiB), (MiB - 10, 2 * MiB + 10), (5, 3 * MiB + 12344), (3 * MiB, 3 * MiB + 12344)],
)
def test_range_reads_are_byte_exact_across_blocks(s3, gw, start: int, end: int) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "ranges")
    body = os.urandom(3 * MiB + 12345)
    key = f"r-{start}-{end}"
    s3.put_object(Bucket=b, Key=key, Body=body)
    resp = gw.get_object(Bucket=b, Key=key, Range=f"bytes={start}-{end}")
    assert resp["Body"].read() == body[start : end + 1]
    assert resp["ContentRange"] == f"bytes {start}-{end}/{len(body)}"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 206
    tail = gw.get_object(Bucket=b, Key=key, Range="bytes=-100")["Body"].read()
    assert tail == body[-100:]


def test_errors_are_s3_errors(s3, gw) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "errs")
    s3.put_object(Bucket=b, Key="small", Body=b"0123456789")
    with pytest.raises(ClientError) as ei:
        gw.get_object(Bucket=b, Key="missing")
    assert ei.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as ei:
        gw.get_object(Bucket="no-such-bucket-here", Key="x")
    assert ei.value.response["Error"]["Code"] == "NoSuchBucket"
    with pytest.raises(ClientError) as ei:
        gw.get_object(Bucket=b, Key="small", Range="bytes=100-200")
    assert ei.value.response["Error"]["Code"] == "InvalidRange"
    with pytest.raises(ClientError) as ei:
        gw.head_bucket(Bucket="no-such-bucket-here")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_bad_signature_is_refused(s3, cluster: PcCluster) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "auth")
    s3.put_object(Bucket=b, Key="k", Body=b"secret bytes")
    bad = boto3.client(
        "s3",
        endpoint_url=cluster.gateway,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key="wrong-secret",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as ei:
        bad.get_object(Bucket=b, Key="k")
    assert ei.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    unknown = boto3.client(
        "s3",
        endpoint_url=cluster.gateway,
        aws_access_key_id="nobody",
        aws_secret_access_key="x",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as ei:
        unknown.list_buckets()
    assert ei.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_listings_match_the_under_store(s3, gw) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "listing")
    keys = [f"train/part-{i:03d}.bin" for i in range(25)] + ["val/a", "val/b", "top", "train/sub/x"]
    for k in keys:
        s3.put_object(Bucket=b, Key=k, Body=k.encode())
    assert b in [x["Name"] for x in gw.list_buckets()["Buckets"]]

    def pages(client, **kw):  # type: ignore[no-untyped-def]
        out = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=b, PaginationConfig={"PageSize": 7}, **kw
        ):
            out.append(
                (
                    [o["Key"] for o in page.get("Contents", [])],
                    [p["Prefix"] for p in page.get("CommonPrefixes", [])],
                )
            )
        return out

    assert pages(gw) == pages(s3)
    assert pages(gw, Delimiter="/") == pages(s3, Delimiter="/")
    assert pages(gw, Prefix="train/", Delimiter="/", StartAfter="train/part-010.bin") == pages(
        s3, Prefix="train/", Delimiter="/", StartAfter="train/part-010.bin"
    )
    v1 = [
        o["Key"]
        for p in gw.get_paginator("list_objects").paginate(Bucket=b, PaginationConfig={"PageSize": 4})
        for o in p.get("Contents", [])
    ]
    assert v1 == sorted(keys)
    entry = gw.list_objects_v2(Bucket=b, Prefix="top")["Contents"][0]
    assert entry["Size"] == 3 and entry["ETag"] == s3.head_object(Bucket=b, Key="top")["ETag"]


def test_aws_cli_reads_through_the_gateway(s3, cluster: PcCluster, gw_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "cli")
    body = os.urandom(2 * MiB + 7)
    s3.put_object(Bucket=b, Key="dir/file.bin", Body=body)
    aws = [sys.executable, "-m", "awscli", "--endpoint-url", cluster.gateway, "--region", "us-east-1"]
    out = subprocess.run(
        [*aws, "s3", "ls", f"s3://{b}/dir/"], env=gw_env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "file.bin" in out.stdout and str(len(body)) in out.stdout
    dest = tmp_path / "copy.bin"
    out = subprocess.run(
        [*aws, "s3", "cp", f"s3://{b}/dir/file.bin", str(dest)],
        env=gw_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert dest.read_bytes() == body
    out = subprocess.run([*aws, "s3", "ls"], env=gw_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and b in out.stdout


@pytest.mark.slow
def test_big_object_streams_with_bounded_gateway_memory(s3, gw, cluster: PcCluster) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "big")
    size = 200 * MiB
    chunk = os.urandom(MiB)
    body = chunk * (size // MiB)
    s3.upload_fileobj(__import__("io").BytesIO(body), b, "big.bin")
    want = hashlib.sha256(body).hexdigest()
    del body
    gateway = next(p for n, p in cluster.procs.procs if n == "gateway")
    proc = psutil.Process(gateway.pid)
    rss_before = proc.memory_info().rss
    h = hashlib.sha256()
    peak = rss_before
    stream = gw.get_object(Bucket=b, Key="big.bin")["Body"]
    got = 0
    for part in iter(lambda: stream.read(MiB), b""):
        h.update(part)
        got += len(part)
        if got % (16 * MiB) == 0:
            peak = max(peak, proc.memory_info().rss)
    assert got == size and h.hexdigest() == want
    # read-ahead of a few 1 MiB blocks plus buffers: far below the object's 200 MiB
    assert peak - rss_before < 64 * MiB, f"gateway grew by {(peak - rss_before) / MiB:.0f} MiB"


def test_ssd_tier_survives_a_worker_restart(s3, gw, cluster: PcCluster) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "restart")
    body = os.urandom(48 * MiB)  # more than the 16 MiB memory tiers: most of it lands on SSD
    s3.upload_fileobj(__import__("io").BytesIO(body), b, "obj")
    assert gw.get_object(Bucket=b, Key="obj")["Body"].read() == body
    blocks_on_disk = sum(1 for w in cluster.workers for _ in w.data_dir.rglob("*.blk"))
    assert blocks_on_disk > 0
    for w in cluster.workers:
        cluster.stop_worker(w)
        cluster.start_worker(w)
    cluster.wait_workers(len(cluster.workers))
    time.sleep(0.5)
    # New processes: their under-store counters start at zero.
    assert gw.get_object(Bucket=b, Key="obj")["Body"].read() == body
    refetched = cluster.worker_sum("pipecache_ufs_read_bytes_total")
    ssd_hits = cluster.worker_sum("pipecache_cache_hit_bytes_total", tier="ssd")
    assert ssd_hits > 0
    assert refetched <= len(body) - ssd_hits, "blocks kept on SSD were fetched again"


def test_corrupted_block_file_is_detected_and_fetched_again(s3, gw, cluster: PcCluster) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "corrupt")
    body = os.urandom(24 * MiB)
    s3.put_object(Bucket=b, Key="a", Body=body)
    s3.put_object(Bucket=b, Key="b", Body=os.urandom(48 * MiB))
    assert gw.get_object(Bucket=b, Key="a")["Body"].read() == body
    # Reading "b" (3x the memory tiers) pushes every block of "a" out of memory onto SSD.
    gw.get_object(Bucket=b, Key="b")["Body"].read()
    files = sorted(f for w in cluster.workers for f in w.data_dir.rglob("*.blk"))
    assert files, "nothing was demoted to SSD"
    for f in files:
        with f.open("r+b") as fh:
            fh.seek(-1, os.SEEK_END)
            last = fh.read(1)
            fh.seek(-1, os.SEEK_END)
            fh.write(bytes([last[0] ^ 0xFF]))
    corrupt_before = cluster.worker_sum("pipecache_worker_corrupt_blocks_total")
    ufs_before = cluster.worker_sum("pipecache_ufs_read_bytes_total")
    assert gw.get_object(Bucket=b, Key="a")["Body"].read() == body
    assert cluster.worker_sum("pipecache_worker_corrupt_blocks_total") > corrupt_before
    assert cluster.worker_sum("pipecache_ufs_read_bytes_total") > ufs_before


def test_metrics_name_the_tiers_the_under_store_and_the_operations(s3, gw, cluster: PcCluster) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "metrics")
    s3.put_object(Bucket=b, Key="m", Body=b"x" * 1000)
    before = metric_sum(cluster.gateway, "pipecache_gateway_requests_total", op="get_object", status="200")
    gw.get_object(Bucket=b, Key="m")["Body"].read()
    gw.get_object(Bucket=b, Key="m")["Body"].read()
    after = metric_sum(cluster.gateway, "pipecache_gateway_requests_total", op="get_object", status="200")
    assert after - before == 2
    with pytest.raises(ClientError):
        gw.get_object(Bucket=b, Key="absent")
    assert metric_sum(cluster.gateway, "pipecache_gateway_requests_total", op="get_object", status="404") >= 1
    samples = {name for w in cluster.workers for (name, _labels) in metrics(w.url)}
    assert {"pipecache_cache_hit_bytes_total", "pipecache_ufs_read_bytes_total"} <= samples
    tiers = {
        dict(labels).get("tier")
        for w in cluster.workers
        for (name, labels) in metrics(w.url)
        if name == "pipecache_cache_hit_bytes_total"
    }
    assert {"memory", "ssd"} <= tiers

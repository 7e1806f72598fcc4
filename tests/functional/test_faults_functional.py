"""Faults on a real cluster: cut, stalled and refused connections, killed workers, a full SSD.

A TCP proxy (tests/faultproxy.py) sits between the cluster and the under-store
(moto), and in front of one of the two workers (which advertises the proxy's
address, so every reader reaches it through the proxy). In every case the
reader must get all the right bytes or an error: never a short body with 200,
never wrong bytes, never a hang.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from cluster import FAST_TEST_MASTER_ARGS, PcCluster, Worker, free_port, make_bucket
from pipecache.client import ClientOptions, connect
from pipecache.client.ufs import UnderStoreTimeouts
from pipecache.tiering.ssd import BLOCK_SUFFIX, HEADER_SIZE

sys.path.insert(0, str(Path(__file__).parents[1]))
from faultproxy import FaultProxy  # noqa: E402

MiB = 1024 * 1024
BUCKET = "faults"
UFS_READ_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def fc(
    ufs_proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PcCluster, FaultProxy]]:
    """Worker 0 reached directly, worker 1 only through a proxy; the under-store through another.

    The master and the workers give up on a silent under-store request after 1 s, and try twice.
    """
    ufs_args = ("--ufs-read-timeout", str(UFS_READ_TIMEOUT), "--ufs-attempts", "2")
    c = PcCluster(
        ufs=ufs_proxy.url,
        root=tmp_path_factory.mktemp("faults"),
        n_workers=1,
        master_args=(*FAST_TEST_MASTER_ARGS, *ufs_args),
        worker_args=ufs_args,
    )
    c.start()
    port = free_port()
    proxy = FaultProxy("127.0.0.1", port).start()
    w = Worker(1, port, c.root / "worker-1", args=(*ufs_args, "--advertise", proxy.url))
    c.workers.append(w)
    try:
        c.start_worker(w)
        c.wait_workers(2)
        yield c, proxy
    finally:
        proxy.stop()
        c.stop()


@pytest.fixture
def gwc(fc: tuple[PcCluster, FaultProxy]):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config
    from cluster import ACCESS_KEY, SECRET_KEY

    return boto3.client(
        "s3",
        endpoint_url=fc[0].gateway,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, read_timeout=30),
    )


@pytest.fixture(autouse=True)
def healthy(ufs_proxy: FaultProxy, fc: tuple[PcCluster, FaultProxy]) -> Iterator[None]:
    """Every test starts and ends with both links passing and both workers up."""
    yield
    ufs_proxy.set("pass")
    c, proxy = fc
    proxy.set("pass")
    for w in c.workers:
        if w.proc is None:
            c.start_worker(w)
    c.wait_workers(2)


def seed(s3, key: str, size: int) -> bytes:  # type: ignore[no-untyped-def]
    make_bucket(s3, BUCKET)
    body = os.urandom(size)
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return body


def digest(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_a_worker_link_cut_mid_block_fails_over(s3, gwc, fc) -> None:  # type: ignore[no-untyped-def]
    c, proxy = fc
    body = seed(s3, "cut/big", 12 * MiB)
    # Every connection to worker 1 is reset after 300 KiB: each of its blocks dies mid-body.
    proxy.set("cut", cut_after=300 * 1024)
    got = gwc.get_object(Bucket=BUCKET, Key="cut/big")["Body"].read()
    assert digest(got) == digest(body)
    assert proxy.cuts > 0, "no block went through the cut link: the test proved nothing"
    # Cached blocks too: the second read still meets the cut link for worker 1's blocks.
    cuts = proxy.cuts
    assert digest(gwc.get_object(Bucket=BUCKET, Key="cut/big")["Body"].read()) == digest(body)
    assert proxy.cuts > cuts


async def test_a_stalled_worker_is_left_for_another(s3, fc) -> None:  # type: ignore[no-untyped-def]
    c, proxy = fc
    body = seed(s3, "stall/obj", 6 * MiB)
    proxy.set("stall")
    t0 = time.monotonic()
    async with connect(c.master, ClientOptions(stall_timeout=1.0)) as pc:
        got = await pc.get(BUCKET, "stall/obj")
    assert got == body
    # Each stalled block costs one stall timeout; the reader never waits for the whole timeout.
    assert time.monotonic() - t0 < 30


def test_a_worker_killed_mid_stream(s3, gwc, fc) -> None:  # type: ignore[no-untyped-def]
    c, _ = fc
    body = seed(s3, "kill/big", 24 * MiB)
    resp = gwc.get_object(Bucket=BUCKET, Key="kill/big")
    assert resp["ContentLength"] == len(body)
    stream = resp["Body"]
    head = stream.read(2 * MiB)
    c.stop_worker(c.workers[0], signal.SIGKILL)
    rest = stream.read()
    # The worker's blocks come from the other worker (and the under-store): all of them, right.
    assert digest(head + rest) == digest(body)


def test_understore_down_errors_fast_and_cached_data_is_still_served(s3, gwc, fc, ufs_proxy) -> None:  # type: ignore[no-untyped-def]
    cached = seed(s3, "down/cached", 3 * MiB)
    cold = seed(s3, "down/cold", 1 * MiB)
    assert gwc.get_object(Bucket=BUCKET, Key="down/cached")["Body"].read() == cached
    ufs_proxy.set("refuse")
    # Within the gateway's metadata TTL, cached data needs nothing from the under-store.
    assert gwc.get_object(Bucket=BUCKET, Key="down/cached")["Body"].read() == cached
    t0 = time.monotonic()
    with pytest.raises(ClientError) as err:
        gwc.get_object(Bucket=BUCKET, Key="down/cold")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503, err.value.response
    assert time.monotonic() - t0 < 20
    ufs_proxy.set("pass")
    assert gwc.get_object(Bucket=BUCKET, Key="down/cold")["Body"].read() == cold


def test_understore_cut_mid_body_caches_nothing_wrong(s3, gwc, fc, ufs_proxy) -> None:  # type: ignore[no-untyped-def]
    body = seed(s3, "ufscut/obj", 4 * MiB)
    gwc.head_object(Bucket=BUCKET, Key="ufscut/obj")  # metadata first, so the cut hits block reads
    ufs_proxy.set("cut", cut_after=200 * 1024)
    try:
        got = gwc.get_object(Bucket=BUCKET, Key="ufscut/obj")["Body"].read()
    except ClientError as exc:
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] in (500, 503), exc.response
    else:
        assert digest(got) == digest(body)  # retried to completion: then it must be right
    assert ufs_proxy.cuts > 0
    ufs_proxy.set("pass")
    # Nothing half-read was cached: every later read is the object, from whatever tier.
    for _ in range(2):
        assert digest(gwc.get_object(Bucket=BUCKET, Key="ufscut/obj")["Body"].read()) == digest(body)


def test_understore_stalled_mid_body_is_a_quick_503_and_caches_nothing(s3, gwc, fc, ufs_proxy) -> None:  # type: ignore[no-untyped-def]
    body = seed(s3, "ufsstall/obj", 3 * MiB)
    gwc.head_object(Bucket=BUCKET, Key="ufsstall/obj")  # metadata first (HEADs fit under the stall point)
    # Every under-store connection goes quiet after 200 KiB: block reads hang mid-body.
    ufs_proxy.set("stall", cut_after=200 * 1024)
    stalls = ufs_proxy.stalls
    t0 = time.monotonic()
    with pytest.raises(ClientError) as err:
        gwc.get_object(Bucket=BUCKET, Key="ufsstall/obj")["Body"].read()
    elapsed = time.monotonic() - t0
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503, err.value.response
    assert err.value.response["Error"]["Code"] == "ServiceUnavailable"
    # The worker waited out its read timeout twice (two attempts), then answered: not a hang.
    assert ufs_proxy.stalls - stalls >= 2
    assert 2 * UFS_READ_TIMEOUT <= elapsed < 10, elapsed
    ufs_proxy.set("pass")
    # Nothing half-read was cached: the object comes back whole and right, twice.
    for _ in range(2):
        assert digest(gwc.get_object(Bucket=BUCKET, Key="ufsstall/obj")["Body"].read()) == digest(body)


def test_understore_silent_before_answering_is_a_quick_503(s3, gwc, fc, ufs_proxy) -> None:  # type: ignore[no-untyped-def]
    body = seed(s3, "ufssilent/obj", 2 * MiB)
    ufs_proxy.set("stall")  # connections accepted, requests swallowed, nothing answered
    t0 = time.monotonic()
    with pytest.raises(ClientError) as err:
        gwc.get_object(Bucket=BUCKET, Key="ufssilent/obj")
    elapsed = time.monotonic() - t0
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503, err.value.response
    # The master's HEAD waited out its read timeout twice, then answered: not a hang.
    assert ufs_proxy.stalls >= 2
    assert 2 * UFS_READ_TIMEOUT <= elapsed < 10, elapsed
    ufs_proxy.set("pass")
    assert digest(gwc.get_object(Bucket=BUCKET, Key="ufssilent/obj")["Body"].read()) == digest(body)


def test_understore_throttling_is_passed_on_as_slow_down(s3, gwc, fc, ufs_proxy) -> None:  # type: ignore[no-untyped-def]
    body = seed(s3, "throttled/obj", 2 * MiB)
    ufs_proxy.set("slowdown")
    t0 = time.monotonic()
    with pytest.raises(ClientError) as err:
        gwc.get_object(Bucket=BUCKET, Key="throttled/obj")
    # The reader's own SDK backs off and retries on SlowDown: it must see that code, not a 500.
    assert err.value.response["Error"]["Code"] == "SlowDown", err.value.response
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert time.monotonic() - t0 < 20
    ufs_proxy.set("pass")
    assert digest(gwc.get_object(Bucket=BUCKET, Key="throttled/obj")["Body"].read()) == digest(body)


UFS_WRITE_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def write_gw(fc: tuple[PcCluster, FaultProxy]):  # type: ignore[no-untyped-def]
    """A boto3 client of a gateway that gives up on a silent under-store write after 1 s, twice."""
    from cluster import ACCESS_KEY, SECRET_KEY, s3_client

    with fc[0].running_gateway(
        "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY,
        "--ufs-write-timeout", str(UFS_WRITE_TIMEOUT), "--ufs-write-attempts", "2",
    ) as url:  # fmt: skip
        yield s3_client(url, retries={"total_max_attempts": 1})


def _quick_503(call, *args, **kw) -> float:  # type: ignore[no-untyped-def]
    """Seconds until ``call`` failed with 503 ServiceUnavailable (it must fail so)."""
    t0 = time.monotonic()
    with pytest.raises(ClientError) as err:
        call(*args, **kw)
    elapsed = time.monotonic() - t0
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503, err.value.response
    assert err.value.response["Error"]["Code"] == "ServiceUnavailable", err.value.response
    return elapsed


def test_writes_to_a_silent_understore_fail_quickly_and_never_land(s3, write_gw, ufs_proxy) -> None:  # type: ignore[no-untyped-def]
    make_bucket(s3, BUCKET)
    body = os.urandom(300_000)
    upload = write_gw.create_multipart_upload(Bucket=BUCKET, Key="wstall/mp")["UploadId"]
    ufs_proxy.set("stall")  # connections accepted, requests swallowed, nothing answered
    stalls = ufs_proxy.stalls
    # Two silent attempts of 1 s, botocore's backoff between them, the body at 1 MiB/s: then 503.
    deadline = UnderStoreTimeouts(read=UFS_WRITE_TIMEOUT, attempts=2).write_deadline(len(body))
    bound = deadline + 4  # scheduling slack on a busy machine
    for elapsed in (
        _quick_503(write_gw.put_object, Bucket=BUCKET, Key="wstall/obj", Body=body),
        _quick_503(
            write_gw.upload_part, Bucket=BUCKET, Key="wstall/mp", UploadId=upload, PartNumber=1, Body=body
        ),
    ):
        assert deadline <= elapsed < bound, (elapsed, deadline)
    assert ufs_proxy.stalls - stalls >= 2  # both writes reached the under-store, which said nothing
    ufs_proxy.set("pass")
    # Nothing was acknowledged, and nothing landed.
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=BUCKET, Key="wstall/obj")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert s3.list_parts(Bucket=BUCKET, Key="wstall/mp", UploadId=upload).get("Parts", []) == []
    # A stalled CompleteMultipartUpload: 503 and no object; the upload can be completed after.
    etag = write_gw.upload_part(
        Bucket=BUCKET, Key="wstall/mp", UploadId=upload, PartNumber=1, Body=body
    )["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    ufs_proxy.set("stall")
    elapsed = _quick_503(
        write_gw.complete_multipart_upload,
        Bucket=BUCKET, Key="wstall/mp", UploadId=upload, MultipartUpload=parts,
    )  # fmt: skip
    assert elapsed < bound, elapsed
    ufs_proxy.set("pass")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=BUCKET, Key="wstall/mp")
    write_gw.complete_multipart_upload(
        Bucket=BUCKET, Key="wstall/mp", UploadId=upload, MultipartUpload=parts
    )
    assert digest(s3.get_object(Bucket=BUCKET, Key="wstall/mp")["Body"].read()) == digest(body)
    # And the healed link carries writes again.
    write_gw.put_object(Bucket=BUCKET, Key="wstall/obj", Body=body)
    assert digest(s3.get_object(Bucket=BUCKET, Key="wstall/obj")["Body"].read()) == digest(body)


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a small tmpfs needs root"
)
def test_full_ssd_keeps_serving(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The SSD tier's disk fills up (ENOSPC) long before its budget: the worker serves on.

    An 8 MiB tmpfs, 6 MiB of it taken by another file, under a 64 MiB SSD budget:
    once a block or two is demoted, every SSD write fails. Reads stay right (from
    memory and the under-store), the worker lives, the failure is counted and
    logged once, and a second log line says when writes work again.
    """
    ssd = tmp_path / "worker-0"
    ssd.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(ssd)], check=True)
    filler = ssd / "filler"
    filler.write_bytes(b"\0" * (6 * MiB))
    ufs = tmp_path / "ufs"
    (ufs / "ssdfull").mkdir(parents=True)
    objs = {f"k{i}": os.urandom(MiB) for i in range(12)}
    for k, v in objs.items():
        (ufs / "ssdfull" / k).write_bytes(v)
    c = PcCluster(ufs=ufs.as_uri(), root=tmp_path, memory="2MiB", ssd="64MiB", n_workers=1)
    try:
        c.start()
        import asyncio

        async def read_all(keys: list[str], passes: int = 2) -> None:
            async with connect(c.master) as pc:
                for _ in range(passes):
                    for k in keys:
                        assert await pc.get("ssdfull", k) == objs[k]

        asyncio.run(read_all(list(objs)))
        w = c.workers[0]
        assert w.proc is not None and w.proc.poll() is None
        from cluster import metric_sum

        failed = metric_sum(w.url, "pipecache_worker_store_events_total", event="ssd_write_errors")
        assert failed >= 10, failed  # nearly every demotion of 24 block reads
        logged = [line for line in capfd.readouterr().err.splitlines() if "SSD tier" in line]
        assert len(logged) == 1, logged
        assert "ERROR" in logged[0] and "cannot write blocks" in logged[0], logged
        assert "No space left on device" in logged[0] and str(ssd) in logged[0], logged
        # Room again (6 MiB, for 4 MiB of new blocks): demotions work, the worker says so once.
        filler.unlink()
        asyncio.run(read_all(["k0", "k1", "k2", "k3"], passes=1))
        logged = [line for line in capfd.readouterr().err.splitlines() if "SSD tier" in line]
        assert len(logged) == 1 and "writes work again after" in logged[0], logged
        assert w.proc.poll() is None
    finally:
        c.stop()
        subprocess.run(["umount", "-l", str(ssd)], check=False)


def test_corrupt_ssd_block_files_are_dropped_and_fetched_again(s3, gwc, fc) -> None:  # type: ignore[no-untyped-def]
    c, _ = fc
    body = seed(s3, "corrupt/big", 40 * MiB)  # more than the two 16 MiB memory tiers hold
    assert digest(gwc.get_object(Bucket=BUCKET, Key="corrupt/big")["Body"].read()) == digest(body)
    files = [f for w in c.workers for f in (w.data_dir / "blocks").rglob(f"*{BLOCK_SUFFIX}")]
    assert len(files) >= 8, f"only {len(files)} blocks on SSD: the test would prove little"
    for f in files:  # one bit of rot in the data of every block file on every worker
        with f.open("r+b") as fh:
            fh.seek(HEADER_SIZE + 4321)
            byte = fh.read(1)
            fh.seek(HEADER_SIZE + 4321)
            fh.write(bytes([byte[0] ^ 0x01]))
    dropped = c.worker_sum("pipecache_worker_corrupt_blocks_total")
    for _ in range(2):  # the rotten copies are found, dropped and fetched again; then all is clean
        assert digest(gwc.get_object(Bucket=BUCKET, Key="corrupt/big")["Body"].read()) == digest(body)
    assert c.worker_sum("pipecache_worker_corrupt_blocks_total") - dropped > 0


def test_cached_reads_go_on_while_the_master_is_down(s3, gwc, fc) -> None:  # type: ignore[no-untyped-def]
    c, _ = fc
    body = seed(s3, "masterless/obj", 3 * MiB)
    assert gwc.get_object(Bucket=BUCKET, Key="masterless/obj")["Body"].read() == body
    c.stop_master(signal.SIGKILL)
    try:
        time.sleep(2.5)  # past the gateway's own metadata TTL: it must ask, and find no master
        got = gwc.get_object(Bucket=BUCKET, Key="masterless/obj")["Body"].read()
        assert digest(got) == digest(body)
        # What it never saw, it cannot serve: an error, quickly.
        unseen = seed(s3, "masterless/unseen", 10)
        with pytest.raises(ClientError) as err:
            gwc.get_object(Bucket=BUCKET, Key="masterless/unseen")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    finally:
        c.start_master()
    c.wait_workers(2)  # the workers register again with the new master
    assert gwc.get_object(Bucket=BUCKET, Key="masterless/unseen")["Body"].read() == unseen

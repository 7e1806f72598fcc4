"""Unmodified S3 clients against the gateway: aiobotocore and PyTorch's S3 connector.

boto3, the AWS CLI, s3fs and minio are covered beside the features they use
(test_gateway_functional.py, test_gateway_writes_functional.py). These two have
their own HTTP stacks: aiobotocore signs and streams through aiohttp, and
s3torchconnector through the AWS Common Runtime (Rust/C), with its own SigV4
and its own ranged, parallel GETs.
"""

from __future__ import annotations

import hashlib
import io
import os
import time

import pytest
from cluster import ACCESS_KEY, SECRET_KEY, PcCluster, make_bucket

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def dataset(moto_server: str) -> dict[str, bytes]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    make_bucket(s3, "compat")
    objects = {f"shards/part-{i:03d}.bin": os.urandom(1000 * i + 17) for i in range(12)}
    objects["shards/big.bin"] = os.urandom(3 * MiB + 5)  # several blocks, ranged reads
    for k, v in objects.items():
        s3.put_object(Bucket="compat", Key=k, Body=v)
    return objects


async def test_aiobotocore_reads_lists_and_writes(cluster: PcCluster, dataset: dict[str, bytes]) -> None:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    cfg = AioConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
    async with get_session().create_client(
        "s3",
        endpoint_url=cluster.gateway,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=cfg,
    ) as s3:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket="compat", Prefix="shards/", MaxKeys=5)
        keys = [o["Key"] async for page in pages for o in page.get("Contents", [])]
        assert keys == sorted(dataset)
        for key, body in dataset.items():
            r = await s3.get_object(Bucket="compat", Key=key)
            async with r["Body"] as stream:
                assert await stream.read() == body
        r = await s3.get_object(Bucket="compat", Key="shards/big.bin", Range="bytes=1048570-2097160")
        async with r["Body"] as stream:
            assert await stream.read() == dataset["shards/big.bin"][1048570:2097161]
        await s3.put_object(Bucket="compat", Key="written/by-aiobotocore", Body=b"hello" * 1000)
        r = await s3.get_object(Bucket="compat", Key="written/by-aiobotocore")
        async with r["Body"] as stream:
            assert await stream.read() == b"hello" * 1000


def _torch_connector() -> None:
    pytest.importorskip("torch", reason="PyTorch is not installed (the test extra installs torch==2.13.0)")
    pytest.importorskip("s3torchconnector", reason="s3torchconnector is not installed")


def test_s3torchconnector_datasets_and_checkpoints(
    cluster: PcCluster, dataset: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    _torch_connector()
    import torch
    from s3torchconnector import S3Checkpoint, S3ClientConfig, S3IterableDataset, S3MapDataset

    # The CRT client takes credentials from the environment, as in a training pod.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    cfg = S3ClientConfig(force_path_style=True)
    kw = {"region": "us-east-1", "endpoint": cluster.gateway, "s3client_config": cfg}

    def digest(reader) -> tuple[str, str]:  # type: ignore[no-untyped-def]
        return reader.key, hashlib.sha256(reader.read()).hexdigest()

    want = {k: hashlib.sha256(v).hexdigest() for k, v in dataset.items()}
    it = S3IterableDataset.from_prefix("s3://compat/shards/", transform=digest, **kw)
    assert dict(it) == want
    mp = S3MapDataset.from_prefix("s3://compat/shards/", transform=digest, **kw)
    assert len(mp) == len(dataset) and dict(mp[i] for i in range(len(mp))) == want

    # Ranged reads: seek and read inside the multi-block object.
    from s3torchconnector import S3Reader  # noqa: F401  (the type the datasets hand out)

    big = next(r for r in S3IterableDataset.from_objects(["s3://compat/shards/big.bin"], **kw))
    big.seek(MiB + 3)
    assert big.read(2 * MiB) == dataset["shards/big.bin"][MiB + 3 : 3 * MiB + 3]

    # Checkpoints: torch.save through the writer (a multipart or single PUT), torch.load back.
    ckpt = S3Checkpoint(region="us-east-1", endpoint=cluster.gateway, s3client_config=cfg)
    state = {"w": torch.arange(250_000, dtype=torch.float32), "step": 7}
    with ckpt.writer("s3://compat/ckpt/epoch-1.pt") as w:
        torch.save(state, w)
    with ckpt.reader("s3://compat/ckpt/epoch-1.pt") as r:
        back = torch.load(io.BytesIO(r.read()), weights_only=True)
    assert back["step"] == 7 and torch.equal(back["w"], state["w"])


def test_boto3_with_its_pure_python_signer(cluster: PcCluster, dataset: dict[str, bytes]) -> None:
    """awscrt (installed for checksums) makes botocore sign through the CRT; users without it
    sign in Python. Both must pass: this run opts out of the CRT the way botocore allows."""
    import subprocess
    import sys

    script = f"""
import boto3, urllib.request, botocore.auth
from botocore.config import Config
assert not botocore.auth.HAS_CRT
s3 = boto3.client("s3", endpoint_url={cluster.gateway!r}, aws_access_key_id={ACCESS_KEY!r},
                  aws_secret_access_key={SECRET_KEY!r}, region_name="us-east-1",
                  config=Config(signature_version="s3v4", s3={{"addressing_style": "path"}}))
s3.put_object(Bucket="compat", Key="py-signer", Body=b"signed in python")
assert s3.get_object(Bucket="compat", Key="py-signer")["Body"].read() == b"signed in python"
url = s3.generate_presigned_url("get_object", Params={{"Bucket": "compat", "Key": "shards/big.bin"}})
print(len(urllib.request.urlopen(url).read()))
"""
    env = {**os.environ, "BOTO_DISABLE_CRT": "true"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout) == len(dataset["shards/big.bin"])


def test_boto3_transfers_ranged_parallel_download(cluster: PcCluster, gw, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from boto3.s3.transfer import TransferConfig

    body = os.urandom(7 * MiB + 333)
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    src.write_bytes(body)
    # 1 MiB parts both ways: a multipart upload_file, then download_file's parallel Range GETs.
    cfg = TransferConfig(multipart_threshold=MiB, multipart_chunksize=MiB, max_concurrency=8)
    gw.upload_file(str(src), "compat", "transfer/obj.bin", Config=cfg)
    gw.download_file("compat", "transfer/obj.bin", str(dst), Config=cfg)
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(body).digest()


def test_aws_cli_sync_and_s3api(cluster: PcCluster, gw_env: dict[str, str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import subprocess
    import sys

    aws = [sys.executable, "-m", "awscli", "--endpoint-url", cluster.gateway, "--region", "us-east-1"]

    def run(*args: str) -> str:
        out = subprocess.run([*aws, *args], env=gw_env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    up = tmp_path / "up"
    files = {f"d{i % 3}/f{i}.txt": os.urandom(1000 + i) for i in range(9)}
    past = time.time() - 60
    for rel, data in files.items():
        (up / rel).parent.mkdir(parents=True, exist_ok=True)
        (up / rel).write_bytes(data)
        # S3 times are whole seconds: a file written in the second of its upload could look
        # newer than its copy, and the second sync below would upload it again.
        os.utime(up / rel, (past, past))
    run("s3", "sync", str(up), "s3://compat/synced/")
    listed = json.loads(run("s3api", "list-objects-v2", "--bucket", "compat", "--prefix", "synced/"))
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted(f"synced/{k}" for k in files)
    head = json.loads(run("s3api", "head-object", "--bucket", "compat", "--key", "synced/d0/f0.txt"))
    assert head["ContentLength"] == len(files["d0/f0.txt"])
    down = tmp_path / "down"
    run("s3", "sync", "s3://compat/synced/", str(down))
    assert {str(p.relative_to(down)): p.read_bytes() for p in down.rglob("*") if p.is_file()} == files
    # A second sync has nothing to do; after a local change it uploads just that file.
    assert run("s3", "sync", str(up), "s3://compat/synced/").strip() == ""
    (up / "d1" / "f1.txt").write_bytes(b"changed")
    assert "d1/f1.txt" in run("s3", "sync", str(up), "s3://compat/synced/")
    run("s3", "rm", "--recursive", "s3://compat/synced/")
    assert "Contents" not in json.loads(
        run("s3api", "list-objects-v2", "--bucket", "compat", "--prefix", "synced/")
    )

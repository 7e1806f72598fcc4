"""The S3 write path end to end: real clients -> gateway -> under-store (moto), with invalidation."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from cluster import ACCESS_KEY, SECRET_KEY, PcCluster, make_bucket

MiB = 1024 * 1024


def _send(
    cluster: PcCluster,
    path: str,
    body: bytes,
    headers: dict[str, str],
    signed_body: bytes | None = None,
    payload: str = "",
) -> tuple[int, str]:
    """PUT ``body`` signed with botocore's signer (over ``signed_body`` if given): (status, code)."""
    import urllib.error
    import urllib.request

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config
    from botocore.credentials import Credentials

    # moto's server parses form-encoded bodies away: never let urllib pick that type.
    headers = {"Content-Type": "application/octet-stream", **headers}
    req = AWSRequest("PUT", f"{cluster.gateway}/{path}", data=signed_body or body, headers=headers)
    # Over http botocore signs payloads; these contexts make it claim what it sends over https.
    if payload == "UNSIGNED-PAYLOAD":
        req.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    elif payload == "STREAMING-UNSIGNED-PAYLOAD-TRAILER":
        req.context["checksum"] = {"request_algorithm": {"in": "trailer", "name": "x-amz-checksum-crc32"}}
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(req)
    prepared = urllib.request.Request(req.url, data=body, method="PUT", headers=dict(req.headers))
    try:
        with urllib.request.urlopen(prepared, timeout=30) as resp:
            return int(resp.status), ""
    except urllib.error.HTTPError as exc:
        text = exc.read().decode()
        return int(exc.code), text.partition("<Code>")[2].partition("</Code>")[0]


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_put_then_get_and_overwrite_is_never_stale(s3, gw) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "writes")
    v1 = os.urandom(2 * MiB + 7)
    r = gw.put_object(Bucket=b, Key="obj", Body=v1)
    assert r["ETag"] == s3.head_object(Bucket=b, Key="obj")["ETag"]
    assert s3.get_object(Bucket=b, Key="obj")["Body"].read() == v1  # really in the under-store
    assert gw.get_object(Bucket=b, Key="obj")["Body"].read() == v1
    assert gw.get_object(Bucket=b, Key="obj")["Body"].read() == v1  # now cached
    v2 = os.urandom(2 * MiB + 7)  # same size: only the ETag tells the versions apart
    r2 = gw.put_object(Bucket=b, Key="obj", Body=v2)
    assert r2["ETag"] != r["ETag"]
    got = gw.get_object(Bucket=b, Key="obj")
    assert got["ETag"] == r2["ETag"]
    assert got["Body"].read() == v2
    assert gw.head_object(Bucket=b, Key="obj")["ETag"] == r2["ETag"]


def test_empty_object_and_nested_keys(s3, gw) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "writes")
    gw.put_object(Bucket=b, Key="empty", Body=b"")
    assert gw.get_object(Bucket=b, Key="empty")["Body"].read() == b""
    gw.put_object(Bucket=b, Key="a/b/c d+é.txt", Body=b"nested")
    assert gw.get_object(Bucket=b, Key="a/b/c d+é.txt")["Body"].read() == b"nested"


def test_content_type_and_metadata_round_trip(s3, gw) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "writes")
    gw.put_object(
        Bucket=b,
        Key="typed.json",
        Body=b"{}",
        ContentType="application/json",
        Metadata={"Owner": "alice", "run": "42"},
    )
    head = s3.head_object(Bucket=b, Key="typed.json")
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"owner": "alice", "run": "42"}
    for resp in (gw.head_object(Bucket=b, Key="typed.json"), gw.get_object(Bucket=b, Key="typed.json")):
        assert resp["ContentType"] == "application/json"
        assert resp["Metadata"] == {"owner": "alice", "run": "42"}
    # A listing warms the metadata cache without content types: reads must still see them.
    gw.list_objects_v2(Bucket=b)
    assert gw.get_object(Bucket=b, Key="typed.json")["ContentType"] == "application/json"


def test_delete_then_no_such_key(s3, gw) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "writes")
    gw.put_object(Bucket=b, Key="doomed", Body=b"bye")
    assert gw.get_object(Bucket=b, Key="doomed")["Body"].read() == b"bye"
    assert gw.delete_object(Bucket=b, Key="doomed")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as ei:
        gw.get_object(Bucket=b, Key="doomed")
    assert _code(ei) == "NoSuchKey"
    gw.delete_object(Bucket=b, Key="doomed")  # idempotent, as S3


def test_delete_objects(s3, gw) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "multi-delete")
    keys = [f"k/{i}" for i in range(5)]
    for k in keys:
        gw.put_object(Bucket=b, Key=k, Body=k.encode())
        assert gw.get_object(Bucket=b, Key=k)["Body"].read() == k.encode()
    r = gw.delete_objects(Bucket=b, Delete={"Objects": [{"Key": k} for k in keys[:3]] + [{"Key": "nope"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == sorted([*keys[:3], "nope"])
    assert not r.get("Errors")
    assert [o["Key"] for o in gw.list_objects_v2(Bucket=b)["Contents"]] == keys[3:]
    with pytest.raises(ClientError) as ei:
        gw.get_object(Bucket=b, Key=keys[0])
    assert _code(ei) == "NoSuchKey"
    r = gw.delete_objects(Bucket=b, Delete={"Objects": [{"Key": k} for k in keys[3:]], "Quiet": True})
    assert not r.get("Deleted") and not r.get("Errors")
    assert gw.list_objects_v2(Bucket=b)["KeyCount"] == 0


def test_create_and_delete_bucket(s3, gw) -> None:  # type: ignore[no-untyped-def]
    gw.create_bucket(Bucket="made-here")
    assert "made-here" in [x["Name"] for x in s3.list_buckets()["Buckets"]]
    try:  # S3 (and moto) in us-east-1 answer 200 to re-creating your own bucket
        gw.create_bucket(Bucket="made-here")
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "BucketAlreadyOwnedByYou"
    gw.create_bucket(Bucket="made-there", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    gw.put_object(Bucket="made-here", Key="x", Body=b"x")
    with pytest.raises(ClientError) as ei:
        gw.delete_bucket(Bucket="made-here")
    assert _code(ei) == "BucketNotEmpty"
    gw.delete_object(Bucket="made-here", Key="x")
    gw.delete_bucket(Bucket="made-here")
    gw.delete_bucket(Bucket="made-there")
    with pytest.raises(ClientError) as ei:
        gw.head_bucket(Bucket="made-here")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_copy_object(s3, gw) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "copies")
    body = os.urandom(100_000)
    gw.put_object(Bucket=b, Key="src dir/src+1.bin", Body=body, ContentType="image/png")
    gw.put_object(Bucket=b, Key="dst.bin", Body=b"old")
    assert gw.get_object(Bucket=b, Key="dst.bin")["Body"].read() == b"old"
    r = gw.copy_object(Bucket=b, Key="dst.bin", CopySource={"Bucket": b, "Key": "src dir/src+1.bin"})
    assert r["CopyObjectResult"]["ETag"] == s3.head_object(Bucket=b, Key="dst.bin")["ETag"]
    got = gw.get_object(Bucket=b, Key="dst.bin")
    assert got["Body"].read() == body
    assert got["ContentType"] == "image/png"
    with pytest.raises(ClientError) as ei:
        gw.copy_object(Bucket=b, Key="x", CopySource={"Bucket": b, "Key": "missing"})
    assert _code(ei) == "NoSuchKey"


def test_bad_digests(s3, gw, cluster: PcCluster) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "digests")
    body = b"the real body"
    # Signed for one body, sent with another of the same length.
    status, code = _send(cluster, f"{b}/sha", b"the fake body", {}, signed_body=body)
    assert (status, code) == (400, "XAmzContentSHA256Mismatch")
    with pytest.raises(ClientError) as ei:
        gw.put_object(
            Bucket=b, Key="md5", Body=body, ContentMD5=base64.b64encode(hashlib.md5(b"x").digest()).decode()
        )
    assert _code(ei) == "BadDigest"
    with pytest.raises(ClientError) as ei:
        gw.put_object(Bucket=b, Key="crc", Body=body, ChecksumCRC32="AAAAAA==")
    assert _code(ei) == "BadDigest"
    for key in ("sha", "md5", "crc"):  # nothing was stored
        with pytest.raises(ClientError):
            s3.head_object(Bucket=b, Key=key)
    ok = gw.put_object(
        Bucket=b, Key="md5", Body=body, ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode()
    )
    assert ok["ETag"].strip('"') == hashlib.md5(body).hexdigest()


def test_unsigned_payload_and_aws_chunked_trailer(s3, gw, cluster: PcCluster) -> None:  # type: ignore[no-untyped-def]
    """UNSIGNED-PAYLOAD, and the aws-chunked unsigned-trailer body boto3 sends over https."""
    from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum

    b = make_bucket(s3, "payloads")

    def send(key: str, body: bytes, headers: dict[str, str]) -> int:
        return _send(cluster, f"{b}/{key}", body, headers, payload=headers["x-amz-content-sha256"])[0]

    data = os.urandom(300_000)
    assert send("unsigned", data, {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"}) == 200
    assert gw.get_object(Bucket=b, Key="unsigned")["Body"].read() == data

    chunked = AwsChunkedWrapper(
        io.BytesIO(data), checksum_cls=Crc32Checksum, checksum_name="x-amz-checksum-crc32"
    ).read()
    headers = {
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "Content-Encoding": "aws-chunked",
        "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-decoded-content-length": str(len(data)),
    }
    assert send("trailer", chunked, headers) == 200
    assert gw.get_object(Bucket=b, Key="trailer")["Body"].read() == data
    bad = chunked.replace(data[1000:1010], bytes(10), 1)
    assert send("bad-trailer", bad, headers) == 400
    with pytest.raises(ClientError):
        s3.head_object(Bucket=b, Key="bad-trailer")


def test_aws_cli_cp_upload_and_rm(s3, cluster: PcCluster, gw_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "cli-writes")
    src = tmp_path / "up.bin"
    body = os.urandom(3 * MiB)
    src.write_bytes(body)
    aws = [sys.executable, "-m", "awscli", "--endpoint-url", cluster.gateway, "--region", "us-east-1"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([*aws, *args], env=gw_env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out

    run("s3", "cp", str(src), f"s3://{b}/up/file.bin")
    assert s3.get_object(Bucket=b, Key="up/file.bin")["Body"].read() == body
    dest = tmp_path / "down.bin"
    run("s3", "cp", f"s3://{b}/up/file.bin", str(dest))
    assert dest.read_bytes() == body
    run("s3", "rm", f"s3://{b}/up/file.bin")
    assert "Contents" not in s3.list_objects_v2(Bucket=b, Prefix="up/")


def test_s3fs_write_and_read(s3, cluster: PcCluster) -> None:  # type: ignore[no-untyped-def]
    import s3fs

    b = make_bucket(s3, "fsspec-writes")
    fs = s3fs.S3FileSystem(
        key=ACCESS_KEY,
        secret=SECRET_KEY,
        client_kwargs={"endpoint_url": cluster.gateway},
        skip_instance_cache=True,
    )
    body = os.urandom(600_000)
    with fs.open(f"{b}/data/part-0.bin", "wb") as f:
        f.write(body)
    assert s3.get_object(Bucket=b, Key="data/part-0.bin")["Body"].read() == body
    assert fs.cat(f"{b}/data/part-0.bin") == body
    fs.pipe(f"{b}/data/part-0.bin", b"replaced")
    assert fs.cat(f"{b}/data/part-0.bin") == b"replaced"
    fs.rm(f"{b}/data/part-0.bin")
    fs.invalidate_cache()
    assert not fs.exists(f"{b}/data/part-0.bin")


def test_minio_put_and_get(s3, cluster: PcCluster) -> None:  # type: ignore[no-untyped-def]
    from minio import Minio

    b = make_bucket(s3, "minio-writes")
    mc = Minio(
        cluster.gateway.removeprefix("http://"), ACCESS_KEY, SECRET_KEY, secure=False, region="us-east-1"
    )
    body = os.urandom(1_500_000)
    r = mc.put_object(
        b,
        "m/obj.bin",
        io.BytesIO(body),
        len(body),
        content_type="text/x-test",
        metadata={"x-amz-meta-color": "blue"},
    )
    assert r.etag == s3.head_object(Bucket=b, Key="m/obj.bin")["ETag"].strip('"')
    resp = mc.get_object(b, "m/obj.bin")
    try:
        assert resp.read() == body
        assert resp.headers["Content-Type"] == "text/x-test"
        assert resp.headers["x-amz-meta-color"] == "blue"
    finally:
        resp.close()
        resp.release_conn()
    mc.remove_object(b, "m/obj.bin")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=b, Key="m/obj.bin")


def test_multipart_upload_file_and_overwrite(s3, gw, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from boto3.s3.transfer import TransferConfig

    b = make_bucket(s3, "multipart")
    small = gw.put_object(Bucket=b, Key="big.bin", Body=b"small first")
    assert gw.get_object(Bucket=b, Key="big.bin")["Body"].read() == b"small first"
    body = os.urandom(20 * MiB + 123)
    src = tmp_path / "big.bin"
    src.write_bytes(body)
    cfg = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=3)
    gw.upload_file(str(src), b, "big.bin", Config=cfg, ExtraArgs={"ContentType": "application/x-tar"})
    head = s3.head_object(Bucket=b, Key="big.bin")
    assert head["ContentLength"] == len(body) and head["ETag"].endswith('-3"')
    got = gw.get_object(Bucket=b, Key="big.bin")
    assert got["ETag"] == head["ETag"] != small["ETag"]
    assert got["ContentType"] == "application/x-tar"
    assert got["Body"].read() == body


def test_multipart_abort_and_errors(s3, gw) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "multipart")
    up = gw.create_multipart_upload(Bucket=b, Key="aborted")["UploadId"]
    part = gw.upload_part(Bucket=b, Key="aborted", UploadId=up, PartNumber=1, Body=b"x" * 100)
    with pytest.raises(ClientError) as ei:
        gw.complete_multipart_upload(
            Bucket=b,
            Key="aborted",
            UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]},
        )
    assert _code(ei) == "InvalidPart"
    assert part["ETag"]
    gw.abort_multipart_upload(Bucket=b, Key="aborted", UploadId=up)
    with pytest.raises(ClientError) as ei:  # (moto answers 500 to most calls on an aborted upload)
        gw.abort_multipart_upload(Bucket=b, Key="aborted", UploadId="no-such-upload")
    assert _code(ei) == "NoSuchUpload"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=b, Key="aborted")


@pytest.mark.parametrize("algorithm", ["CRC32C", "CRC64NVME", "CRC32", "SHA256"])
def test_sdk_checksums_are_verified(s3, gw, algorithm: str) -> None:  # type: ignore[no-untyped-def]
    """boto3's flexible checksums (CRC32C and CRC64NVME through awscrt), as SDKs send them by default."""
    b = make_bucket(s3, "checksums")
    data = os.urandom(200_000)
    gw.put_object(Bucket=b, Key=f"ok-{algorithm}", Body=data, ChecksumAlgorithm=algorithm)
    assert gw.get_object(Bucket=b, Key=f"ok-{algorithm}")["Body"].read() == data
    # A checksum header that does not match the body is refused, and nothing is written.
    field = f"Checksum{algorithm}"
    other = gw.put_object(Bucket=b, Key="scratch", Body=b"other bytes", ChecksumAlgorithm=algorithm)
    with pytest.raises(ClientError) as err:
        gw.put_object(Bucket=b, Key=f"bad-{algorithm}", Body=data, **{field: other[field]})
    assert err.value.response["Error"]["Code"] in ("BadDigest", "InvalidRequest"), err.value.response
    with pytest.raises(ClientError):
        s3.head_object(Bucket=b, Key=f"bad-{algorithm}")

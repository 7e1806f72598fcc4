"""Tenants through a real gateway: grants checked before lookups, scoped listings, public buckets."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from cluster import PcCluster, make_bucket, metric_sum, s3_client

TENANTS = """\
public_read: [tn-open]
tenants:
  team-a:
    keys: [{access_key: TEAMA, secret_key: team-a-secret}]
    read: [tn-shared/team-a, tn-data]
    write: [tn-shared/team-a/]
    cache_quota: 3GiB
  team-b:
    keys: [{access_key: TEAMB, secret_key: team-b-secret}]
    read: [tn-shared/team-b, tn-shared/deep/x/y]
    write: [tn-scratch]
"""
A_KEYS = sorted([f"team-a/{i}.bin" for i in range(5)] + [f"team-a/sub/{i}.bin" for i in range(3)])
OTHER_KEYS = ["team-ab/secret.bin", "team-b/z.bin", "root.txt", "deep/x/y/1.bin", "deep/x/z/2.bin"]


@pytest.fixture(scope="module")
def tenant_gw(cluster: PcCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("tenants") / "tenants.yaml"
    path.write_text(TENANTS)
    with cluster.running_gateway("--tenants", str(path)) as url:
        yield url


@pytest.fixture(scope="module")
def seeded(moto_server: str) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    for b in ("tn-shared", "tn-open", "tn-private", "tn-data", "tn-scratch"):
        make_bucket(s3, b)
    for k in A_KEYS + OTHER_KEYS:
        s3.put_object(Bucket="tn-shared", Key=k, Body=k.encode())
    s3.put_object(Bucket="tn-open", Key="pub.txt", Body=b"public")
    s3.put_object(Bucket="tn-private", Key="p.txt", Body=b"private")


def client(url: str, access: str | None, secret: str = "", **cfg: object):  # type: ignore[no-untyped-def]
    if access is None:
        config = Config(signature_version=UNSIGNED, retries={"max_attempts": 1}, **cfg)  # type: ignore[arg-type]
        return boto3.client("s3", endpoint_url=url, region_name="us-east-1", config=config)
    return s3_client(url, access, secret, **cfg)


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def denied(call, *args, **kw) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as ei:
        call(*args, **kw)
    return code(ei)


def test_reads_only_inside_grants(tenant_gw: str, seeded: None) -> None:
    a = client(tenant_gw, "TEAMA", "team-a-secret")
    assert a.get_object(Bucket="tn-shared", Key="team-a/1.bin")["Body"].read() == b"team-a/1.bin"
    assert a.head_object(Bucket="tn-shared", Key="team-a/sub/0.bin")["ContentLength"] == len(
        "team-a/sub/0.bin"
    )
    for bucket, key in [
        ("tn-shared", "team-ab/secret.bin"),  # a string prefix of the grant, not inside the folder
        ("tn-shared", "team-b/z.bin"),
        ("tn-shared", "root.txt"),
        ("tn-private", "p.txt"),
        ("tn-private", "no-such-key"),  # refused before lookup: no NoSuchKey leaks existence
    ]:
        assert denied(a.get_object, Bucket=bucket, Key=key) == "AccessDenied", key
    with pytest.raises(ClientError) as ei:
        a.head_object(Bucket="tn-shared", Key="team-b/z.bin")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # Any tenant may read a public-read bucket.
    assert a.get_object(Bucket="tn-open", Key="pub.txt")["Body"].read() == b"public"


def test_listing_shows_only_granted_folders(tenant_gw: str, seeded: None) -> None:
    a = client(tenant_gw, "TEAMA", "team-a-secret")
    top = a.list_objects_v2(Bucket="tn-shared", Delimiter="/")
    assert [p["Prefix"] for p in top.get("CommonPrefixes", [])] == ["team-a/"]
    assert "Contents" not in top and top["IsTruncated"] is False
    for prefix in ("team-a", "team-", "t"):
        page = a.list_objects_v2(Bucket="tn-shared", Prefix=prefix, Delimiter="/")
        assert [p["Prefix"] for p in page.get("CommonPrefixes", [])] == ["team-a/"], prefix
    inside = a.list_objects_v2(Bucket="tn-shared", Prefix="team-a/", Delimiter="/")
    assert [o["Key"] for o in inside["Contents"]] == [k for k in A_KEYS if "sub" not in k]
    assert [p["Prefix"] for p in inside["CommonPrefixes"]] == ["team-a/sub/"]
    assert a.list_objects_v2(Bucket="tn-shared", Prefix="team-b/")["KeyCount"] == 0


@pytest.mark.parametrize("version", [1, 2])
def test_scoped_listing_pages_through_every_granted_key(tenant_gw: str, seeded: None, version: int) -> None:
    a = client(tenant_gw, "TEAMA", "team-a-secret")
    op = "list_objects_v2" if version == 2 else "list_objects"
    pages = list(a.get_paginator(op).paginate(Bucket="tn-shared", PaginationConfig={"PageSize": 3}))
    assert [len(p.get("Contents", [])) for p in pages] == [3, 3, 2]
    assert [p["IsTruncated"] for p in pages] == [True, True, False]
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == A_KEYS


def test_scoped_listing_with_delimiter_and_folders_deep_down(tenant_gw: str, seeded: None) -> None:
    b = client(tenant_gw, "TEAMB", "team-b-secret")
    top = b.list_objects_v2(Bucket="tn-shared", Delimiter="/", MaxKeys=1)
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["deep/"] and top["IsTruncated"]
    rest = b.list_objects_v2(
        Bucket="tn-shared", Delimiter="/", ContinuationToken=top["NextContinuationToken"]
    )
    assert [p["Prefix"] for p in rest["CommonPrefixes"]] == ["team-b/"] and not rest["IsTruncated"]
    flat = b.list_objects_v2(Bucket="tn-shared")
    assert [o["Key"] for o in flat["Contents"]] == ["deep/x/y/1.bin", "team-b/z.bin"]
    deep = b.list_objects_v2(Bucket="tn-shared", Prefix="deep/x/", Delimiter="/")
    assert [p["Prefix"] for p in deep["CommonPrefixes"]] == ["deep/x/y/"]  # not deep/x/z/
    assert denied(b.list_objects_v2, Bucket="tn-data") == "AccessDenied"
    assert denied(b.list_objects_v2, Bucket="tn-shared", ContinuationToken="forged") == "InvalidArgument"


def test_list_buckets_shows_only_the_tenants_buckets(tenant_gw: str, seeded: None) -> None:
    a = client(tenant_gw, "TEAMA", "team-a-secret")
    assert sorted(b["Name"] for b in a.list_buckets()["Buckets"]) == ["tn-data", "tn-shared"]
    a.head_bucket(Bucket="tn-data")
    with pytest.raises(ClientError) as ei:
        a.head_bucket(Bucket="tn-private")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_writes_only_inside_write_grants(tenant_gw: str, seeded: None, tmp_path: Path) -> None:
    a = client(tenant_gw, "TEAMA", "team-a-secret")
    a.put_object(Bucket="tn-shared", Key="team-a/new.txt", Body=b"new")
    assert a.get_object(Bucket="tn-shared", Key="team-a/new.txt")["Body"].read() == b"new"
    assert denied(a.put_object, Bucket="tn-shared", Key="team-b/new.txt", Body=b"x") == "AccessDenied"
    assert denied(a.put_object, Bucket="tn-data", Key="x", Body=b"x") == "AccessDenied"  # read-only grant
    assert denied(a.delete_object, Bucket="tn-shared", Key="team-b/z.bin") == "AccessDenied"
    assert denied(a.create_bucket, Bucket="tn-new-bucket") == "AccessDenied"
    src = {"Bucket": "tn-shared", "Key": "team-b/z.bin"}
    assert denied(a.copy_object, Bucket="tn-shared", Key="team-a/stolen", CopySource=src) == "AccessDenied"
    r = a.delete_objects(
        Bucket="tn-shared", Delete={"Objects": [{"Key": "team-a/new.txt"}, {"Key": "team-b/z.bin"}]}
    )
    assert [d["Key"] for d in r["Deleted"]] == ["team-a/new.txt"]
    assert [(e["Key"], e["Code"]) for e in r["Errors"]] == [("team-b/z.bin", "AccessDenied")]
    big = tmp_path / "big.bin"
    big.write_bytes(b"m" * (6 * 1024 * 1024))
    cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    a.upload_file(str(big), "tn-shared", "team-a/multi.bin", Config=cfg)
    assert a.head_object(Bucket="tn-shared", Key="team-a/multi.bin")["ContentLength"] == big.stat().st_size
    with pytest.raises(S3UploadFailedError, match="AccessDenied"):
        a.upload_file(str(big), "tn-shared", "team-b/multi.bin", Config=cfg)
    b = client(tenant_gw, "TEAMB", "team-b-secret")
    assert b.list_objects_v2(Bucket="tn-shared", Prefix="team-b/")["KeyCount"] == 1  # still there


def test_anonymous_reads_public_buckets_only(tenant_gw: str, seeded: None) -> None:
    anon = client(tenant_gw, None)
    assert anon.get_object(Bucket="tn-open", Key="pub.txt")["Body"].read() == b"public"
    assert [o["Key"] for o in anon.list_objects_v2(Bucket="tn-open")["Contents"]] == ["pub.txt"]
    assert denied(anon.get_object, Bucket="tn-private", Key="p.txt") == "AccessDenied"
    assert denied(anon.list_objects_v2, Bucket="tn-shared") == "AccessDenied"
    assert denied(anon.put_object, Bucket="tn-open", Key="x", Body=b"x") == "AccessDenied"
    assert denied(anon.list_buckets) == "AccessDenied"


def test_keys_are_checked_per_tenant(tenant_gw: str, seeded: None, cluster: PcCluster) -> None:
    from cluster import ACCESS_KEY, SECRET_KEY

    wrong = client(tenant_gw, "TEAMA", "team-b-secret")
    assert denied(wrong.get_object, Bucket="tn-shared", Key="team-a/1.bin") == "SignatureDoesNotMatch"
    # The single key pair of a gateway without tenants file is not a tenant here.
    single = client(tenant_gw, ACCESS_KEY, SECRET_KEY)
    assert denied(single.list_buckets) == "InvalidAccessKeyId"
    assert metric_sum(tenant_gw, "pipecache_gateway_tenant_cache_quota_bytes", tenant="team-a") == 3 * 1024**3


def test_malformed_tenants_file_stops_the_gateway(cluster: PcCluster, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent(TENANTS).replace("read: [tn-shared/team-b", "read: [Bad_Bucket"))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipecache.cli",
            "gateway",
            "--master",
            cluster.master,
            "--tenants",
            str(bad),
            "--check-config",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert f"{bad}, line 10: tenants.team-b.read[0]" in out.stderr
    assert "Traceback" not in out.stderr


def test_upload_and_version_listings_are_filtered(tenant_gw: str, seeded: None) -> None:
    a = client(tenant_gw, "TEAMA", "team-a-secret")
    b = client(tenant_gw, "TEAMB", "team-b-secret")
    up = a.create_multipart_upload(Bucket="tn-shared", Key="team-a/pending.bin")["UploadId"]
    try:
        assert [u["Key"] for u in a.list_multipart_uploads(Bucket="tn-shared")["Uploads"]] == [
            "team-a/pending.bin"
        ]
        assert "Uploads" not in b.list_multipart_uploads(Bucket="tn-shared")
        assert (
            denied(b.list_parts, Bucket="tn-shared", Key="team-a/pending.bin", UploadId=up) == "AccessDenied"
        )
        assert a.list_parts(Bucket="tn-shared", Key="team-a/pending.bin", UploadId=up).get("Parts", []) == []
    finally:
        a.abort_multipart_upload(Bucket="tn-shared", Key="team-a/pending.bin", UploadId=up)
    keys = {v["Key"] for v in b.list_object_versions(Bucket="tn-shared")["Versions"]}
    assert keys == {"team-b/z.bin", "deep/x/y/1.bin"}
    rolled = b.list_object_versions(Bucket="tn-shared", Delimiter="/")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["deep/", "team-b/"]

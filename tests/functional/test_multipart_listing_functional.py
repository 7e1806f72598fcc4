"""UploadPartCopy, ListParts, ListMultipartUploads, ListObjectVersions: boto3 -> gateway -> moto."""

from __future__ import annotations

import os

import pytest
from botocore.exceptions import ClientError
from cluster import make_bucket

MiB = 1024 * 1024


def test_upload_part_copy_reads_the_source_through_the_cache(s3, gw) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "part-copy")
    src = os.urandom(7 * MiB + 5)
    s3.put_object(Bucket=b, Key="src.bin", Body=src)
    up = gw.create_multipart_upload(Bucket=b, Key="dst.bin")["UploadId"]
    first = gw.upload_part_copy(
        Bucket=b, Key="dst.bin", UploadId=up, PartNumber=1,
        CopySource={"Bucket": b, "Key": "src.bin"}, CopySourceRange=f"bytes=0-{5 * MiB - 1}",
    )  # fmt: skip
    second = gw.upload_part_copy(
        Bucket=b, Key="dst.bin", UploadId=up, PartNumber=2,
        CopySource={"Bucket": b, "Key": "src.bin"}, CopySourceRange=f"bytes={5 * MiB}-{len(src) - 1}",
    )  # fmt: skip
    parts = [
        {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]},
    ]
    gw.complete_multipart_upload(Bucket=b, Key="dst.bin", UploadId=up, MultipartUpload={"Parts": parts})
    assert gw.get_object(Bucket=b, Key="dst.bin")["Body"].read() == src
    up2 = gw.create_multipart_upload(Bucket=b, Key="dst2.bin")["UploadId"]
    for bad, code in [
        (f"bytes=0-{len(src)}", "InvalidRange"),
        ("bytes=5-1", "InvalidArgument"),
        ("0-1", "InvalidArgument"),
    ]:
        with pytest.raises(ClientError) as ei:
            gw.upload_part_copy(
                Bucket=b, Key="dst2.bin", UploadId=up2, PartNumber=1,
                CopySource={"Bucket": b, "Key": "src.bin"}, CopySourceRange=bad,
            )  # fmt: skip
        assert ei.value.response["Error"]["Code"] == code, bad
    with pytest.raises(ClientError) as ei:
        gw.upload_part_copy(
            Bucket=b, Key="dst2.bin", UploadId=up2, PartNumber=1, CopySource={"Bucket": b, "Key": "missing"}
        )
    assert ei.value.response["Error"]["Code"] == "NoSuchKey"
    gw.abort_multipart_upload(Bucket=b, Key="dst2.bin", UploadId=up2)


def test_list_parts_and_uploads(s3, gw) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "mpu-lists")
    up = gw.create_multipart_upload(Bucket=b, Key="a/one.bin")["UploadId"]
    etags = [
        gw.upload_part(Bucket=b, Key="a/one.bin", UploadId=up, PartNumber=n, Body=b"x" * n)["ETag"]
        for n in (1, 2, 3)
    ]
    parts = gw.list_parts(Bucket=b, Key="a/one.bin", UploadId=up)
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts["Parts"]] == [
        (1, etags[0], 1),
        (2, etags[1], 2),
        (3, etags[2], 3),
    ]
    first = gw.list_parts(Bucket=b, Key="a/one.bin", UploadId=up, MaxParts=2)
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2] and first["IsTruncated"]
    rest = gw.list_parts(
        Bucket=b, Key="a/one.bin", UploadId=up, PartNumberMarker=first["NextPartNumberMarker"]
    )
    assert [p["PartNumber"] for p in rest["Parts"]] == [3] and not rest["IsTruncated"]
    with pytest.raises(ClientError) as ei:
        gw.list_parts(Bucket=b, Key="a/one.bin", UploadId="no-such-upload")
    assert ei.value.response["Error"]["Code"] == "NoSuchUpload"

    others = [
        gw.create_multipart_upload(Bucket=b, Key=k)["UploadId"]
        for k in ("a/two.bin", "b/three.bin", "top.bin")
    ]
    listed = gw.list_multipart_uploads(Bucket=b)
    assert sorted((u["Key"], u["UploadId"]) for u in listed["Uploads"]) == sorted(
        zip(["a/one.bin", "a/two.bin", "b/three.bin", "top.bin"], [up, *others], strict=True)
    )
    # moto ignores Delimiter and MaxUploads here; the local under-store's paging is unit tested.
    assert [u["Key"] for u in gw.list_multipart_uploads(Bucket=b, Prefix="a/")["Uploads"]] == [
        "a/one.bin",
        "a/two.bin",
    ]
    for key, upload in zip(["a/one.bin", "a/two.bin", "b/three.bin", "top.bin"], [up, *others], strict=True):
        gw.abort_multipart_upload(Bucket=b, Key=key, UploadId=upload)
    assert "Uploads" not in gw.list_multipart_uploads(Bucket=b)


def test_list_object_versions_passes_through(s3, gw) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "versioned")
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=b, Key="k", Body=b"two!")["VersionId"]
    s3.put_object(Bucket=b, Key="dir/x", Body=b"x")
    s3.delete_object(Bucket=b, Key="dir/x")
    want = s3.list_object_versions(Bucket=b)
    got = gw.list_object_versions(Bucket=b)
    assert [(v["Key"], v["VersionId"], v["Size"], v["IsLatest"]) for v in got["Versions"]] == [
        (v["Key"], v["VersionId"], v["Size"], v["IsLatest"]) for v in want["Versions"]
    ]
    assert {(v["Key"], v["VersionId"]) for v in got["Versions"] if v["Key"] == "k"} == {("k", v1), ("k", v2)}
    assert [(m["Key"], m["IsLatest"]) for m in got["DeleteMarkers"]] == [("dir/x", True)]
    rolled = gw.list_object_versions(Bucket=b, Delimiter="/")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["dir/"]
    page = gw.list_object_versions(Bucket=b, Prefix="k", MaxKeys=1)
    assert len(page["Versions"]) == 1 and page["IsTruncated"]
    rest = gw.list_object_versions(
        Bucket=b, Prefix="k", KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"]
    )
    assert {v["VersionId"] for v in page["Versions"] + rest["Versions"]} == {v1, v2}

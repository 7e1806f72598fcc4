"""UploadPartCopy, ListParts, ListMultipartUploads and ListObjectVersions through the gateway, boto3 over moto."""

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

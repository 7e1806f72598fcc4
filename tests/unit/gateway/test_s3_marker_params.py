"""x-amz-copy-source-range and the marker-paged listings' queries (pure)."""

from __future__ import annotations

import pytest
from pipecache.gateway.s3 import errors as s3e
from pipecache.gateway.s3 import xml as s3x
from pipecache.gateway.s3.requests import MarkerListing, parse_copy_range, parse_marker_listing


def test_copy_range() -> None:
    assert parse_copy_range(None, 10) == (0, 10)
    assert parse_copy_range("bytes=0-9", 10) == (0, 10)
    assert parse_copy_range("bytes=3-3", 10) == (3, 4)
    for bad in ("bytes=5-2", "bytes=-3", "bytes=1-", "0-3", "bytes=0-3,5-6", "bytes=" + "9" * 30 + "-1"):
        with pytest.raises(s3e.InvalidArgument):
            parse_copy_range(bad, 10)
    with pytest.raises(s3e.InvalidRange):
        parse_copy_range("bytes=0-10", 10)


def test_marker_listing_query() -> None:
    q = parse_marker_listing(
        [("uploads", ""), ("prefix", "a/"), ("delimiter", "/"), ("key-marker", "a/1"),
         ("upload-id-marker", "u"), ("max-uploads", "5000"), ("encoding-type", "url")],
        "upload-id-marker", "max-uploads",
    )  # fmt: skip
    assert q == MarkerListing("a/", "/", "a/1", "u", 1000, "url")
    assert parse_marker_listing([("versions", "")], "version-id-marker", "max-keys") == MarkerListing()
    for bad in (
        [("max-keys", "x")],
        [("max-keys", "-1")],
        [("encoding-type", "zip")],
        [("prefix", "a"), ("prefix", "b")],
    ):
        with pytest.raises(s3e.InvalidArgument):
            parse_marker_listing(bad, "version-id-marker", "max-keys")


def test_listing_xml_escapes_and_encodes() -> None:
    from pipecache.client.ufs.base import UploadInfo, VersionInfo

    q = MarkerListing(prefix="a&b/", encoding_type="url")
    body = s3x.list_uploads_xml(
        "bkt", q, [UploadInfo("a&b/k k", "u1", 0.0)], ["a&b/sub/"],
        truncated=True, next_key_marker="a&b/k k", next_upload_id_marker="u1",
    ).decode()  # fmt: skip
    assert "<Key>a%26b/k%20k</Key>" in body and "<NextUploadIdMarker>u1</NextUploadIdMarker>" in body
    assert "<Prefix>a%26b/sub/</Prefix>" in body and "<IsTruncated>true</IsTruncated>" in body
    versions = [VersionInfo("k<", "v1", "e", 3, 0.0), VersionInfo("k<", "v0", "", 0, 0.0, False, True)]
    body = s3x.list_versions_xml(
        "bkt", MarkerListing(), versions, [], truncated=False, next_key_marker="", next_version_id_marker=""
    ).decode()
    assert "<Version><Key>k&lt;</Key><VersionId>v1</VersionId><IsLatest>true</IsLatest>" in body
    assert "<DeleteMarker><Key>k&lt;</Key><VersionId>v0</VersionId><IsLatest>false</IsLatest>" in body
    assert "NextKeyMarker" not in body

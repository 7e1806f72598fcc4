"""S3UnderStore and client.listing.paginate against a real moto S3 server."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import boto3
import pytest
import pytest_asyncio
from botocore.exceptions import ClientError
from pipecache.client.listing import paginate
from pipecache.client.protocol import ListEntry, ListPage
from pipecache.client.ufs import S3UnderStore, UnderStoreTimeouts, open_understore
from pipecache.client.ufs.s3 import map_client_error
from pipecache.tiering.errors import (
    CacheError,
    NoSuchBucket,
    NoSuchKey,
    ObjectChanged,
    SlowDown,
    UnderStoreError,
)

DATA = bytes(range(256)) * 400  # 102400 bytes

LIST_KEYS = [
    "a/1",
    "a/2",
    "a/b/c",
    "a/b/d",
    "a/c",
    "a-x",
    "b",
    "c/",
    "c/d/e",
    "c/x",
    "d/e/f/g",
    "é/1",
    "\uffff",
    "\U00010000",
    "z z+&?=",
]


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="blob.bin", Body=DATA)
    return name


# One event loop and one client for the module: creating an aiobotocore client
# (loading the S3 model) costs more than most of these tests.
in_module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def store(moto_server: str) -> AsyncIterator[S3UnderStore]:
    st = open_understore(moto_server)
    assert isinstance(st, S3UnderStore)
    yield st
    await st.close()


@in_module_loop
async def test_head(store: S3UnderStore, bucket: str, s3: Any) -> None:
    info = await store.head(bucket, "blob.bin")
    meta = s3.head_object(Bucket=bucket, Key="blob.bin")
    assert (info.bucket, info.key, info.size) == (bucket, "blob.bin", len(DATA))
    assert info.etag == meta["ETag"].strip('"') and '"' not in info.etag
    assert info.last_modified == meta["LastModified"].timestamp()


@in_module_loop
@pytest.mark.parametrize(
    ("start", "length"),
    [(0, 1), (0, len(DATA)), (len(DATA) - 1, 1), (1000, 4096), (65535, 2), (5, len(DATA) - 5)],
)
async def test_get_range_exact_bytes(store: S3UnderStore, bucket: str, start: int, length: int) -> None:
    etag = (await store.head(bucket, "blob.bin")).etag
    got = await store.get_range(bucket, "blob.bin", start, length, etag)
    assert got == DATA[start : start + length]
    assert await store.get_range(bucket, "blob.bin", start, length) == got


@in_module_loop
async def test_get_range_past_the_end(store: S3UnderStore, bucket: str) -> None:
    assert await store.get_range(bucket, "blob.bin", 0, 0) == b""
    with pytest.raises(UnderStoreError):
        await store.get_range(bucket, "blob.bin", len(DATA) - 2, 4)  # short body
    with pytest.raises(UnderStoreError):
        await store.get_range(bucket, "blob.bin", len(DATA) + 10, 4)  # 416 InvalidRange


def test_moto_honours_if_match(bucket: str, s3: Any) -> None:
    """Moto answers a stale If-Match with 412, so get_range's If-Match path is exercised.

    (S3UnderStore also compares the returned ETag, for servers that ignore If-Match.)
    """
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="blob.bin", IfMatch='"0123"', Range="bytes=0-1")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert isinstance(map_client_error(info.value), ObjectChanged)


@in_module_loop
async def test_stale_etag_raises_object_changed(store: S3UnderStore, bucket: str, s3: Any) -> None:
    old = (await store.head(bucket, "blob.bin")).etag
    s3.put_object(Bucket=bucket, Key="blob.bin", Body=DATA[::-1])
    new = (await store.head(bucket, "blob.bin")).etag
    assert new != old
    with pytest.raises(ObjectChanged):
        await store.get_range(bucket, "blob.bin", 0, 10, old)
    assert await store.get_range(bucket, "blob.bin", 0, 10, new) == DATA[::-1][:10]


@in_module_loop
async def test_missing_key_and_bucket(store: S3UnderStore, bucket: str) -> None:
    with pytest.raises(NoSuchKey):
        await store.head(bucket, "nope")
    with pytest.raises(NoSuchKey):
        await store.get_range(bucket, "nope", 0, 1)
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(NoSuchBucket):
        await store.head(missing, "blob.bin")
    with pytest.raises(NoSuchBucket):
        await store.get_range(missing, "blob.bin", 0, 1)
    with pytest.raises(NoSuchBucket):
        await store.list(missing)
    with pytest.raises(NoSuchBucket):
        await store.head_bucket(missing)
    await store.head_bucket(bucket)


@in_module_loop
async def test_list_buckets(store: S3UnderStore, bucket: str, s3: Any) -> None:
    buckets = {b.name: b for b in await store.list_buckets()}
    assert bucket in buckets
    want = {b["Name"]: b["CreationDate"].timestamp() for b in s3.list_buckets()["Buckets"]}
    assert buckets[bucket].created == want[bucket]


@in_module_loop
async def test_list_entries_carry_metadata(store: S3UnderStore, bucket: str) -> None:
    page = await store.list(bucket)
    info = await store.head(bucket, "blob.bin")
    assert page.entries == [ListEntry("blob.bin", info.size, info.etag, info.last_modified)]
    assert not page.truncated and page.next_token is None


# ---- listing: moto's ListObjectsV2 vs paginate ------------------------------------


@pytest.fixture(scope="module")
def listing_bucket(moto_server: str) -> str:
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    name = f"l-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    for key in LIST_KEYS:
        s3.put_object(Bucket=name, Key=key, Body=key.encode())
    return name


def shape(page: ListPage) -> tuple[list[str], list[str], bool]:
    return [e.key for e in page.entries], page.prefixes, page.truncated


async def s3_pages(store: S3UnderStore, bucket: str, **kw: Any) -> list[ListPage]:
    pages: list[ListPage] = []
    token: str | None = None
    while True:
        page = await store.list(bucket, token=token, **kw)
        pages.append(page)
        if not page.truncated:
            return pages
        assert page.next_token
        token = page.next_token


def local_pages(entries: list[ListEntry], **kw: Any) -> list[ListPage]:
    pages: list[ListPage] = []
    token: str | None = None
    while True:
        page = paginate(entries, token=token, **kw)
        pages.append(page)
        if not page.truncated:
            return pages
        token = page.next_token


@in_module_loop
@pytest.mark.parametrize(
    ("prefix", "delimiter", "start_after"),
    [
        ("", "", ""),
        ("", "/", ""),
        ("a", "/", ""),
        ("a/", "/", ""),
        ("c/", "/", ""),
        ("d/", "/", ""),
        ("", "-", ""),
        ("", "/", "a/b/c"),
        ("", "/", "a-x"),
        ("a/", "", "a/b"),
        ("", "", "é"),  # (moto answers 500 to a StartAfter of U+FFFF: not XML-safe)
        ("nope", "/", ""),
    ],
)
async def test_listing_matches_paginate(
    store: S3UnderStore, listing_bucket: str, prefix: str, delimiter: str, start_after: str
) -> None:
    whole = await store.list(listing_bucket)
    assert [e.key for e in whole.entries] == sorted(LIST_KEYS, key=lambda k: k.encode())
    for max_keys in (1, 3, 1000):
        kw = {"prefix": prefix, "delimiter": delimiter, "start_after": start_after}
        remote = await s3_pages(store, listing_bucket, max_keys=max_keys, **kw)
        local = local_pages(whole.entries, max_keys=max_keys, **kw)
        assert [shape(p) for p in remote] == [shape(p) for p in local], max_keys


@in_module_loop
async def test_max_keys_zero_matches(store: S3UnderStore, listing_bucket: str) -> None:
    remote = await store.list(listing_bucket, max_keys=0)
    assert shape(remote) == shape(paginate([], max_keys=0)) == ([], [], False)
    assert remote.next_token is None


# ---- errors and transport ----------------------------------------------------------


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"msg {code}"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "GetObject",
    )


@pytest.mark.parametrize(
    ("code", "status", "want"),
    [
        ("NoSuchKey", 404, NoSuchKey),
        ("404", 404, NoSuchKey),
        ("NoSuchBucket", 404, NoSuchBucket),
        ("PreconditionFailed", 412, ObjectChanged),
        ("412", 412, ObjectChanged),
        ("SlowDown", 503, SlowDown),
        ("ServiceUnavailable", 503, SlowDown),
        ("503", 503, SlowDown),
        ("AccessDenied", 403, UnderStoreError),
        ("InternalError", 500, UnderStoreError),
    ],
)
def test_error_mapping(code: str, status: int, want: type[CacheError]) -> None:
    err = map_client_error(client_error(code, status))
    assert type(err) is want
    if want is UnderStoreError:
        assert code in err.message and f"msg {code}" in err.message


def test_bare_404_means_what_the_caller_says() -> None:
    assert isinstance(map_client_error(client_error("404", 404), NoSuchBucket), NoSuchBucket)


@in_module_loop
async def test_unreachable_endpoint_is_under_store_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # One attempt: no retry backoff, to keep the test fast.
    store = S3UnderStore(f"http://127.0.0.1:{port}", timeouts=UnderStoreTimeouts(attempts=1))
    try:
        with pytest.raises(UnderStoreError, match="HeadBucket"):
            await store.head_bucket("anything")
    finally:
        await store.close()

"""S3 (or any S3-compatible server) as the under-store, on aiobotocore.

Credentials come from botocore's default chain (environment, shared files,
instance or pod roles); nothing here reads them. One client, created on first
use and kept until :meth:`S3UnderStore.close`, holds the connection pool.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from ...tiering.errors import (
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    CacheError,
    InterfaceError,
    InvalidPart,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    ObjectChanged,
    SlowDown,
    UnderStoreError,
)
from ..backoff import backoff
from ..listing import MAX_KEYS
from ..protocol import BucketInfo, ListEntry, ListPage, ObjectInfo
from .base import (
    PartInfo,
    PartsPage,
    UnderStoreTimeouts,
    UploadInfo,
    UploadsPage,
    VersionInfo,
    VersionsPage,
)

BODY_BACKOFF_MAX = 2.0
"""Longest pause, in seconds, between attempts at a ranged read whose body failed."""

PART_SIZE = 8 * 1024 * 1024
"""Streamed bodies are buffered one part at a time (plus one part of look-ahead).

A body that fits in one part is sent as one PutObject; a longer one becomes a
multipart upload, aborted if the body fails (so a bad upload leaves nothing).
"""

_SLOW_DOWN = {"SlowDown", "ServiceUnavailable", "503", "Throttling", "RequestLimitExceeded"}
_CHANGED = {"PreconditionFailed", "412"}
_TRANSPORT_ERRORS = (BotoCoreError, aiohttp.ClientError, asyncio.TimeoutError, OSError)
"""Failures below HTTP: connection refused or reset, timeouts, truncated bodies."""


def map_client_error(exc: ClientError, missing: type[CacheError] = NoSuchKey) -> CacheError:
    """The typed error for an S3 error response.

    ``missing`` is what a bare 404 means: HEAD responses have no body, so S3
    cannot say NoSuchKey or NoSuchBucket there and the caller knows which.
    """
    err = exc.response.get("Error", {})
    code = str(err.get("Code", ""))
    message = str(err.get("Message", "")) or str(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "NoSuchKey":
        return NoSuchKey(message)
    if code == "NoSuchBucket":
        return NoSuchBucket(message)
    if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
        return BucketAlreadyOwnedByYou(message)
    if code == "BucketNotEmpty":
        return BucketNotEmpty(message)
    if code == "NoSuchUpload":
        return NoSuchUpload(message)
    if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall"):
        return InvalidPart(message)
    if code in ("InvalidBucketName", "KeyTooLongError"):
        return InterfaceError(message)
    if code in ("404", "NotFound"):
        return missing(message)
    if code in _CHANGED or status == 412:
        return ObjectChanged(message)
    if code in _SLOW_DOWN or status == 503:
        return SlowDown(message)
    return UnderStoreError(f"{code or status}: {message}")


def _etag(raw: Any) -> str:
    return str(raw).strip('"')


class S3UnderStore:
    """The under-store on S3 at ``endpoint_url`` (None: AWS's own endpoint).

    ``region`` None lets botocore find it (AWS_DEFAULT_REGION, config files).
    Custom endpoints (MinIO, Ceph, moto) are addressed path-style, since their
    host names rarely resolve with a bucket in front.

    Retries: botocore's "standard" mode retries every call up to
    ``timeouts.attempts`` times, with jittered exponential backoff, on
    throttling (SlowDown, 503), 5xx, refused or reset connections and a stall
    before the response headers. It cannot retry a body that stalls or breaks
    after the headers came; :meth:`get_range` does that itself, within the
    same number of attempts. Kept small: a worker serving a miss has a client
    waiting.
    """

    def __init__(
        self,
        endpoint_url: str | None,
        *,
        region: str | None = None,
        max_pool_connections: int = 64,
        timeouts: UnderStoreTimeouts | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.uri = endpoint_url or "s3://"
        self._region = region
        self.timeouts = timeouts or UnderStoreTimeouts()
        self.timeouts.validate()
        self._config = AioConfig(
            connect_timeout=self.timeouts.connect,
            read_timeout=self.timeouts.read,
            max_pool_connections=max_pool_connections,
            retries={"mode": "standard", "total_max_attempts": self.timeouts.attempts},
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _s3(self) -> Any:
        """The shared aiobotocore client, created on first use."""
        if self._client is None:
            async with self._lock:  # concurrent first calls must not build two pools
                if self._client is None:
                    stack = contextlib.AsyncExitStack()
                    session = get_session()
                    self._client = await stack.enter_async_context(
                        session.create_client(
                            "s3",
                            endpoint_url=self.endpoint_url,
                            region_name=self._region,
                            config=self._config,
                        )
                    )
                    self._stack = stack
        return self._client

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        """HeadObject: size, ETag (unquoted) and LastModified (epoch seconds)."""
        s3 = await self._s3()
        try:
            r = await s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            err = map_client_error(exc)
            if isinstance(err, NoSuchKey):
                # A 404 HEAD does not say whether the bucket is missing; ask,
                # and keep NoSuchKey if that question fails for another reason.
                with contextlib.suppress(UnderStoreError, SlowDown):
                    await self.head_bucket(bucket)
            raise err from None
        except _TRANSPORT_ERRORS as exc:
            raise _transport(exc, "HeadObject") from None
        return ObjectInfo(
            bucket,
            key,
            int(r["ContentLength"]),
            _etag(r["ETag"]),
            r["LastModified"].timestamp(),
            content_type=str(r.get("ContentType") or ""),
            metadata={str(k).lower(): str(v) for k, v in (r.get("Metadata") or {}).items()},
        )

    async def get_range(
        self, bucket: str, key: str, start: int, length: int, etag: str | None = None
    ) -> bytes:
        """GetObject of ``bytes=start-(start+length-1)``, with If-Match when ``etag`` is given.

        The returned ETag is compared too, for servers that ignore If-Match.
        A zero-length range is answered without a request (HTTP cannot ask for it).
        A body that stalls past the read timeout, breaks or comes short is read
        again (backing off), up to ``timeouts.attempts`` in all; then
        UnderStoreError. Only whole, checked bodies are returned, so nothing
        half-read can be cached.
        """
        if start < 0 or length < 0:
            raise InterfaceError(f"bad range: start {start}, length {length}")
        if length == 0:
            return b""
        attempts = self.timeouts.attempts
        for attempt in range(attempts):
            try:
                return await self._get_range_once(bucket, key, start, length, etag)
            except _BrokenBody as exc:
                if attempt + 1 >= attempts:
                    raise UnderStoreError(f"{exc.message} (after {attempts} attempts)") from None
                await asyncio.sleep(backoff(attempt, BODY_BACKOFF_MAX))
        raise AssertionError("unreachable")

    async def _get_range_once(
        self, bucket: str, key: str, start: int, length: int, etag: str | None
    ) -> bytes:
        s3 = await self._s3()
        args: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "Range": f"bytes={start}-{start + length - 1}",
        }
        if etag is not None:
            args["IfMatch"] = f'"{etag}"'
        with _translated("GetObject"):
            r = await s3.get_object(**args)
            async with r["Body"] as body:
                if etag is not None and _etag(r["ETag"]) != etag:
                    raise ObjectChanged(f"{key!r} is now version {_etag(r['ETag'])}, not {etag}")
                if int(r["ContentLength"]) != length:
                    # Too short, or the server ignored Range: do not read a whole object.
                    raise UnderStoreError(
                        f"{key!r}: asked {length} bytes at {start}, got {r['ContentLength']}"
                    )
                try:
                    data = await body.read()
                except _TRANSPORT_ERRORS as exc:
                    raise _BrokenBody(f"GetObject body of {key!r}: {exc.__class__.__name__}: {exc}") from None
        if len(data) != length:
            raise _BrokenBody(f"short body for {key!r}: {len(data)} of {length} bytes")
        return bytes(data)

    async def list(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        token: str | None = None,
        max_keys: int = MAX_KEYS,
    ) -> ListPage:
        """ListObjectsV2, arguments passed straight through; ``next_token`` is S3's."""
        s3 = await self._s3()
        args: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if delimiter:
            args["Delimiter"] = delimiter
        if start_after:
            args["StartAfter"] = start_after
        if token is not None:
            args["ContinuationToken"] = token
        with _translated("ListObjectsV2", NoSuchBucket):
            r = await s3.list_objects_v2(**args)
        entries = [
            ListEntry(str(o["Key"]), int(o["Size"]), _etag(o["ETag"]), o["LastModified"].timestamp())
            for o in r.get("Contents", [])
        ]
        prefixes = [str(p["Prefix"]) for p in r.get("CommonPrefixes", [])]
        truncated = bool(r.get("IsTruncated", False))
        return ListPage(entries, prefixes, truncated, r.get("NextContinuationToken"))

    async def list_buckets(self) -> builtins.list[BucketInfo]:
        """ListBuckets (following its continuation tokens, where the server pages)."""
        s3 = await self._s3()
        out: builtins.list[BucketInfo] = []
        args: dict[str, Any] = {}
        while True:
            with _translated("ListBuckets"):
                r = await s3.list_buckets(**args)
            out += [BucketInfo(str(b["Name"]), b["CreationDate"].timestamp()) for b in r.get("Buckets", [])]
            if not r.get("ContinuationToken"):
                return out
            args["ContinuationToken"] = r["ContinuationToken"]

    async def head_bucket(self, bucket: str) -> None:
        """HeadBucket; NoSuchBucket if it does not exist."""
        s3 = await self._s3()
        with _translated("HeadBucket", NoSuchBucket):
            await s3.head_bucket(Bucket=bucket)

    # ---- writes ----

    async def put(
        self,
        bucket: str,
        key: str,
        body: AsyncIterator[bytes] | bytes,
        size: int | None = None,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """PutObject, or a multipart upload for a streamed body over :data:`PART_SIZE`."""
        extra: dict[str, Any] = {}
        if content_type:
            extra["ContentType"] = content_type
        if metadata:
            extra["Metadata"] = metadata
        if isinstance(body, bytes | bytearray | memoryview):
            data = bytes(body)
            _check_size(len(data), size)
            return await self._put_one(bucket, key, data, extra)
        parts = aiter(_parts(body, PART_SIZE))
        first = await anext(parts, b"")
        second = await anext(parts, None)
        if second is None:
            _check_size(len(first), size)
            return await self._put_one(bucket, key, first, extra)
        return await self._put_multipart(bucket, key, [first, second], parts, size, extra)

    @contextlib.asynccontextmanager
    async def _deadline(self, operation: str, size: int) -> AsyncIterator[None]:
        """Bound a write carrying ``size`` bytes (see ``UnderStoreTimeouts.write_deadline``)."""
        seconds = self.timeouts.write_deadline(size)
        try:
            async with asyncio.timeout(seconds) as deadline:
                yield
        except TimeoutError:
            if not deadline.expired():
                raise
            raise UnderStoreError(f"{operation}: no answer from the under-store in {seconds:.0f} s") from None

    async def _put_one(self, bucket: str, key: str, data: bytes, extra: dict[str, Any]) -> ObjectInfo:
        s3 = await self._s3()
        with _translated("PutObject", NoSuchBucket):
            async with self._deadline("PutObject", len(data)):
                r = await s3.put_object(Bucket=bucket, Key=key, Body=data, **extra)
        return ObjectInfo(bucket, key, len(data), _etag(r["ETag"]), time.time())

    async def _put_multipart(
        self,
        bucket: str,
        key: str,
        head: builtins.list[bytes],
        rest: AsyncIterator[bytes],
        size: int | None,
        extra: dict[str, Any],
    ) -> ObjectInfo:
        s3 = await self._s3()
        with _translated("CreateMultipartUpload", NoSuchBucket):
            upload = (await s3.create_multipart_upload(Bucket=bucket, Key=key, **extra))["UploadId"]
        done: builtins.list[dict[str, Any]] = []
        total = 0
        try:

            async def send(data: bytes) -> None:
                n = len(done) + 1
                async with self._deadline("UploadPart", len(data)):
                    r = await s3.upload_part(
                        Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=data
                    )
                done.append({"PartNumber": n, "ETag": r["ETag"]})

            for data in head:
                await send(data)
                total += len(data)
            async for data in rest:
                await send(data)
                total += len(data)
            _check_size(total, size)
            r = await s3.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": done}
            )
        except BaseException as exc:
            # Nothing may become visible from a failed body; a failed abort only leaks
            # parts until the bucket's lifecycle rule (if any) cleans them.
            with contextlib.suppress(Exception):
                await asyncio.shield(s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload))
            if isinstance(exc, ClientError):
                raise map_client_error(exc, NoSuchBucket) from None
            if isinstance(exc, _TRANSPORT_ERRORS):
                raise _transport(exc, "UploadPart") from None
            raise
        return ObjectInfo(bucket, key, total, _etag(r["ETag"]), time.time())

    async def delete(self, bucket: str, key: str) -> None:
        """DeleteObject (S3 itself answers success for a missing key)."""
        s3 = await self._s3()
        with _translated("DeleteObject", NoSuchBucket):
            await s3.delete_object(Bucket=bucket, Key=key)

    async def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> ObjectInfo:
        """CopyObject (single request: sources up to 5 GiB), then a HEAD for the new size."""
        s3 = await self._s3()
        with _translated("CopyObject"):
            await s3.copy_object(
                Bucket=dst_bucket,
                Key=dst_key,
                CopySource={"Bucket": src_bucket, "Key": src_key},
            )
        return await self.head(dst_bucket, dst_key)

    async def create_bucket(self, bucket: str) -> None:
        """CreateBucket, in the client's region."""
        s3 = await self._s3()
        args: dict[str, Any] = {"Bucket": bucket}
        region = s3.meta.region_name
        if region and region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        with _translated("CreateBucket", NoSuchBucket):
            await s3.create_bucket(**args)

    async def delete_bucket(self, bucket: str) -> None:
        """DeleteBucket; BucketNotEmpty as S3 says."""
        s3 = await self._s3()
        with _translated("DeleteBucket", NoSuchBucket):
            await s3.delete_bucket(Bucket=bucket)

    # ---- multipart uploads (passed through) ----

    async def create_upload(
        self,
        bucket: str,
        key: str,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """CreateMultipartUpload; S3's upload id."""
        s3 = await self._s3()
        extra: dict[str, Any] = {}
        if content_type:
            extra["ContentType"] = content_type
        if metadata:
            extra["Metadata"] = metadata
        with _translated("CreateMultipartUpload", NoSuchBucket):
            r = await s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)
        return str(r["UploadId"])

    async def put_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: AsyncIterator[bytes] | bytes,
        size: int | None = None,
    ) -> str:
        """UploadPart. A streamed part is spooled (memory up to PART_SIZE, then a temp file)."""
        s3 = await self._s3()
        with tempfile.SpooledTemporaryFile(max_size=PART_SIZE) as spool:
            if isinstance(body, bytes | bytearray | memoryview):
                spool.write(bytes(body))
            else:
                async for chunk in body:
                    spool.write(chunk)
            length = spool.tell()
            _check_size(length, size)
            spool.seek(0)
            with _translated("UploadPart", NoSuchUpload):
                async with self._deadline("UploadPart", length):
                    r = await s3.upload_part(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=part_number,
                        Body=spool,
                        ContentLength=length,
                    )
        return _etag(r["ETag"])

    async def complete_upload(
        self, bucket: str, key: str, upload_id: str, parts: builtins.list[tuple[int, str]]
    ) -> ObjectInfo:
        """CompleteMultipartUpload, then a HEAD for the new size."""
        s3 = await self._s3()
        done = [{"PartNumber": n, "ETag": f'"{etag.strip(chr(34))}"'} for n, etag in parts]
        with _translated("CompleteMultipartUpload", NoSuchUpload):
            await s3.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
            )
        return await self.head(bucket, key)

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """AbortMultipartUpload."""
        s3 = await self._s3()
        with _translated("AbortMultipartUpload", NoSuchUpload):
            await s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, marker: int = 0, max_parts: int = 1000
    ) -> PartsPage:
        """ListParts, passed through."""
        s3 = await self._s3()
        args: dict[str, Any] = {"Bucket": bucket, "Key": key, "UploadId": upload_id, "MaxParts": max_parts}
        if marker:
            args["PartNumberMarker"] = marker
        with _translated("ListParts", NoSuchUpload):
            r = await s3.list_parts(**args)
        parts = [
            PartInfo(int(p["PartNumber"]), _etag(p["ETag"]), int(p["Size"]), p["LastModified"].timestamp())
            for p in r.get("Parts", [])
        ]
        return PartsPage(parts, bool(r.get("IsTruncated")), int(r.get("NextPartNumberMarker") or 0))

    async def list_uploads(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
    ) -> UploadsPage:
        """ListMultipartUploads, passed through."""
        s3 = await self._s3()
        args: dict[str, Any] = {"Bucket": bucket, "MaxUploads": max_uploads}
        for name, value in (
            ("Prefix", prefix), ("Delimiter", delimiter), ("KeyMarker", key_marker),
            ("UploadIdMarker", upload_id_marker),
        ):  # fmt: skip
            if value:
                args[name] = value
        with _translated("ListMultipartUploads", NoSuchBucket):
            r = await s3.list_multipart_uploads(**args)
        uploads = [
            UploadInfo(str(u["Key"]), str(u["UploadId"]), u["Initiated"].timestamp())
            for u in r.get("Uploads", [])
        ]
        return UploadsPage(
            uploads,
            [str(p["Prefix"]) for p in r.get("CommonPrefixes", [])],
            bool(r.get("IsTruncated")),
            str(r.get("NextKeyMarker") or ""),
            str(r.get("NextUploadIdMarker") or ""),
        )

    async def list_versions(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        max_keys: int = 1000,
    ) -> VersionsPage:
        """ListObjectVersions, passed through (delete markers included)."""
        s3 = await self._s3()
        args: dict[str, Any] = {"Bucket": bucket, "MaxKeys": max_keys}
        for name, value in (
            ("Prefix", prefix), ("Delimiter", delimiter), ("KeyMarker", key_marker),
            ("VersionIdMarker", version_id_marker),
        ):  # fmt: skip
            if value:
                args[name] = value
        with _translated("ListObjectVersions", NoSuchBucket):
            r = await s3.list_object_versions(**args)
        found = [
            (v["LastModified"].timestamp(), False, v) for v in r.get("Versions", [])
        ] + [(m["LastModified"].timestamp(), True, m) for m in r.get("DeleteMarkers", [])]
        versions = [
            VersionInfo(
                str(v["Key"]),
                str(v.get("VersionId") or "null"),
                "" if marker else _etag(v["ETag"]),
                0 if marker else int(v["Size"]),
                ts,
                bool(v.get("IsLatest")),
                marker,
            )
            for ts, marker, v in found
        ]
        # S3 interleaves versions and delete markers: key order, newest first within a key.
        versions.sort(key=lambda v: (v.key, -v.last_modified))
        return VersionsPage(
            versions,
            [str(p["Prefix"]) for p in r.get("CommonPrefixes", [])],
            bool(r.get("IsTruncated")),
            str(r.get("NextKeyMarker") or ""),
            str(r.get("NextVersionIdMarker") or ""),
        )

    async def close(self) -> None:
        """Close the client and its connection pool; a later call opens a new one."""
        async with self._lock:
            stack, self._stack, self._client = self._stack, None, None
            if stack is not None:
                await stack.aclose()


class _BrokenBody(UnderStoreError):
    """The response came, its body did not (stalled, cut or short): worth another attempt."""


def _check_size(got: int, size: int | None) -> None:
    if size is not None and got != size:
        raise InterfaceError(f"body of {got} bytes, {size} announced")


async def _parts(body: AsyncIterator[bytes], part_size: int) -> AsyncIterator[bytes]:
    """Re-cut a stream of chunks into parts of ``part_size`` bytes (the last may be shorter)."""
    buf = bytearray()
    async for chunk in body:
        buf += chunk
        while len(buf) >= part_size:
            yield bytes(buf[:part_size])
            del buf[:part_size]
    if buf:
        yield bytes(buf)


def _transport(exc: BaseException, operation: str) -> UnderStoreError:
    return UnderStoreError(f"{operation}: {exc.__class__.__name__}: {exc}")


@contextlib.contextmanager
def _translated(operation: str, missing: type[CacheError] = NoSuchKey) -> Iterator[None]:
    """Raise botocore's errors from ``operation`` as pipecache's typed errors.

    ``missing`` is what a bare 404 means for this call (a key, a bucket, an upload).
    """
    try:
        yield
    except ClientError as exc:
        raise map_client_error(exc, missing) from None
    except _TRANSPORT_ERRORS as exc:
        raise _transport(exc, operation) from None

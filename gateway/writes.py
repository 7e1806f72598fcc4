"""PutObject, CopyObject, DeleteObject(s), CreateBucket and DeleteBucket.

Writes go through to the under-store by way of the client (which holds its
own under-store connection; the master stays off the data path) and then
invalidate the key's cached metadata on the master and in this gateway's
client. Old blocks are never served again: block ids include the ETag.

Bodies stream: each network read is decoded (aws-chunked) and verified as it
passes (``gateway.chunked``), and the final checks run inside the iterator the
under-store consumes, so a bad upload raises before anything is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from urllib.parse import unquote
from xml.sax.saxutils import escape

from aiohttp import web

from ..client.client import Client
from ..tiering import errors as cache
from . import chunked
from .idle import DEFAULT_BODY_TIMEOUT, idle_bounded
from .s3 import errors as s3e
from .s3 import requests as s3r
from .s3 import sigv4
from .s3 import xml as s3x

MAX_OBJECT = 5 * 1024**3
"""Largest single PutObject, as in S3."""
MAX_XML_BODY = 2 * 1024 * 1024
"""Largest XML request body read (DeleteObjects with 1000 long keys fits)."""
MAX_METADATA = 2048
"""S3's limit on the user metadata of one object (names and values, in bytes)."""
META_PREFIX = "x-amz-meta-"
DELETE_CONCURRENCY = 16
"""Keys of one DeleteObjects deleted at once."""
BODY_TIMEOUT = web.AppKey("body_timeout", float)
"""Seconds a request body may go without a byte (the gateway's ``--body-timeout``)."""


class BucketNotEmpty(s3e.S3Error):
    code = "BucketNotEmpty"
    status = 409
    default_message = "The bucket you tried to delete is not empty"


class BucketAlreadyOwnedByYou(s3e.S3Error):
    code = "BucketAlreadyOwnedByYou"
    status = 409
    default_message = "Your previous request to create the named bucket succeeded and you already own it."


class MetadataTooLarge(s3e.S3Error):
    code = "MetadataTooLarge"
    status = 400
    default_message = "Your metadata headers exceed the maximum allowed metadata size."


class InvalidPart(s3e.S3Error):
    code = "InvalidPart"
    status = 400
    default_message = (
        "One or more of the specified parts could not be found. The part may not have been "
        "uploaded, or the specified entity tag may not match the part's entity tag."
    )


def s3_error(err: cache.CacheError) -> s3e.S3Error:
    """The S3 error for a pipecache error, including the write-only ones."""
    if isinstance(err, cache.NoSuchUpload):
        return s3e.NoSuchUpload()
    if isinstance(err, cache.InvalidPart):
        return InvalidPart(err.message)
    if isinstance(err, cache.BucketNotEmpty):
        return BucketNotEmpty()
    if isinstance(err, cache.BucketAlreadyOwnedByYou):
        return BucketAlreadyOwnedByYou()
    return s3e.from_cache_error(err)


# ---- request bodies ------------------------------------------------------------------


def user_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """``x-amz-meta-*`` request headers as {name without prefix (lower case): value}."""
    out = {
        k.lower().removeprefix(META_PREFIX): v
        for k, v in headers.items()
        if k.lower().startswith(META_PREFIX)
    }
    if sum(len(k) + len(v.encode("utf-8", "replace")) for k, v in out.items()) > MAX_METADATA:
        raise MetadataTooLarge(extra={"MaxSizeAllowed": str(MAX_METADATA)})
    return out


class UploadBody:
    """A request body as verified payload: ``async for piece in body.iter()``.

    The constructor checks the headers (lengths, limits, payload mode); the
    iterator decodes and verifies as it goes and runs the final checks before
    it ends; a client that sends nothing for ``BODY_TIMEOUT`` seconds gets
    RequestTimeout. ``length`` is the payload's size; ``checksums`` holds the
    verified ``x-amz-checksum-*`` values once the body has been read.
    """

    def __init__(self, request: web.Request, auth: sigv4.AuthResult | None) -> None:
        self._request = request
        headers = request.headers
        claim = auth.payload_hash if auth is not None else headers.get("x-amz-content-sha256", "")
        md5 = headers.get("Content-MD5")
        header_sums = chunked.checksum_headers(dict(headers))
        self.checksums: dict[str, str] = {}
        self._decoder: chunked.AwsChunkedDecoder | None = None
        encodings = [e.strip().lower() for e in headers.get("Content-Encoding", "").split(",")]
        if claim.startswith("STREAMING-") or "aws-chunked" in encodings:
            if claim not in (
                sigv4.STREAMING_PAYLOAD,
                sigv4.STREAMING_PAYLOAD_TRAILER,
                sigv4.STREAMING_UNSIGNED_TRAILER,
            ):
                raise s3e.S3NotImplemented(f"payload mode {claim[:64]!r} is not supported")
            self.length = _length(headers.get("x-amz-decoded-content-length"))
            signed = auth if auth is not None and auth.chunk_signed else None
            trailers = chunked.trailer_algorithms(headers.get("x-amz-trailer"))
            self._decoder = chunked.AwsChunkedDecoder(
                auth=signed, decoded_length=self.length, trailers=trailers
            )
            sha = None
        else:
            self.length = _length(
                str(request.content_length) if request.content_length is not None else None
            )
            sha = claim.lower() if _is_sha256(claim) else None
        self._checks = chunked.PayloadChecks(
            length=self.length, sha256_hex=sha, content_md5=md5, checksums=header_sums
        )

    async def iter(self) -> AsyncIterator[bytes]:
        decoder, checks = self._decoder, self._checks
        timeout = self._request.app.get(BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT)
        async for data in idle_bounded(self._request.content.readany, timeout):
            pieces = decoder.feed(data) if decoder is not None else [data]
            for piece in pieces:
                checks.update(piece)
                yield piece
        if decoder is not None:
            self.checksums.update(decoder.finish())
        self.checksums.update(checks.finish())

    async def read(self, limit: int) -> bytes:
        """The whole (small) payload, verified."""
        if self.length > limit:
            raise s3e.EntityTooLarge(extra={"MaxSizeAllowed": str(limit)})
        return b"".join([p async for p in self.iter()])


def _length(raw: str | None) -> int:
    if raw is None:
        raise s3e.MissingContentLength()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        raise s3e.InvalidArgument("Content length is not a number")
    n = int(raw)
    if n > MAX_OBJECT:
        raise s3e.EntityTooLarge(extra={"ProposedSize": str(n), "MaxSizeAllowed": str(MAX_OBJECT)})
    return n


def _is_sha256(claim: str) -> bool:
    return len(claim) == 64 and all(c in "0123456789abcdefABCDEF" for c in claim)


def _checksum_headers(sums: dict[str, str]) -> dict[str, str]:
    return {f"{chunked.CHECKSUM_PREFIX}{alg}": v for alg, v in sums.items() if alg != "md5"}


# ---- objects ---------------------------------------------------------------------------


async def put_object(
    request: web.Request, client: Client, auth: sigv4.AuthResult | None, bucket: str, key: str
) -> web.Response:
    """PutObject: stream the verified body to the under-store, answer its ETag."""
    meta = user_metadata(request.headers)
    body = UploadBody(request, auth)
    ctype = request.headers.get("Content-Type") or None
    try:
        info = await client.put(
            bucket, key, body.iter(), size=body.length, content_type=ctype, metadata=meta
        )
    except cache.CacheError as err:
        raise s3_error(err) from None
    headers = {"ETag": s3x.quote_etag(info.etag), **_checksum_headers(body.checksums)}
    return web.Response(status=200, headers=headers)


def copy_source(header: str) -> tuple[str, str]:
    """(bucket, key) of ``x-amz-copy-source``: ``[/]bucket/key``, URL-encoded."""
    raw, _, query = header.partition("?")
    if query and query not in ("versionId=null",):
        raise s3e.S3NotImplemented("copying a specific version is not supported")
    src = unquote(raw, errors="strict") if raw else ""
    bucket, _, key = src.removeprefix("/").partition("/")
    if not bucket or not key:
        raise s3e.InvalidArgument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            extra={"ArgumentName": "x-amz-copy-source"},
        )
    s3r.validate_bucket_name(bucket, legacy=True)
    s3r.validate_key(key)
    return bucket, key


def readable_copy_source(request: web.Request, may_read: Callable[[str, str], bool]) -> tuple[str, str]:
    """The request's copy source, which the caller must be allowed to read (AccessDenied if not)."""
    try:
        bucket, key = copy_source(request.headers["x-amz-copy-source"])
    except UnicodeDecodeError:
        raise s3e.InvalidArgument("Copy Source is not valid UTF-8") from None
    if not may_read(bucket, key):
        raise s3e.AccessDenied()
    return bucket, key


async def copy_object(
    request: web.Request, client: Client, bucket: str, key: str, may_read: Callable[[str, str], bool]
) -> web.Response:
    """CopyObject (metadata directive COPY), answered with CopyObjectResult XML.

    ``may_read``: whether the caller may read the source (AccessDenied if not).
    """
    src_bucket, src_key = readable_copy_source(request, may_read)
    if request.headers.get("x-amz-metadata-directive", "COPY").upper() != "COPY":
        raise s3e.S3NotImplemented("x-amz-metadata-directive REPLACE is not supported")
    if any(h.lower().startswith("x-amz-copy-source-if") for h in request.headers):
        raise s3e.S3NotImplemented("conditional copies are not supported")
    if (src_bucket, src_key) == (bucket, key):
        raise s3e.InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself "
            "without changing the object's metadata, storage class, website redirect location "
            "or encryption attributes."
        )
    try:
        info = await client.copy(src_bucket, src_key, bucket, key)
    except cache.CacheError as err:
        raise s3_error(err) from None
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<CopyObjectResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<LastModified>{s3r.iso8601(info.last_modified)}</LastModified>"
        f"<ETag>{escape(s3x.quote_etag(info.etag))}</ETag></CopyObjectResult>"
    )
    return web.Response(body=body.encode(), content_type="application/xml")


async def delete_object(request: web.Request, client: Client, bucket: str, key: str) -> web.Response:
    """DeleteObject: 204 whether or not the key existed (as S3)."""
    try:
        await client.delete(bucket, key)
    except cache.CacheError as err:
        raise s3_error(err) from None
    return web.Response(status=204)


async def delete_objects(
    request: web.Request,
    client: Client,
    auth: sigv4.AuthResult | None,
    bucket: str,
    may_delete: Callable[[str], bool],
) -> web.Response:
    """DeleteObjects (``POST ?delete``): per-key results; Content-MD5 or a checksum required.

    Keys ``may_delete`` refuses get an AccessDenied result each; the others are deleted.
    """
    if "Content-MD5" not in request.headers and not chunked.checksum_headers(dict(request.headers)):
        if not (auth is not None and auth.has_trailer):
            raise s3e.InvalidRequest("Missing required header for this request: Content-MD5")
    body = await UploadBody(request, auth).read(MAX_XML_BODY)
    req = s3x.parse_delete(body)
    await client.head_bucket(bucket)
    gate = asyncio.Semaphore(DELETE_CONCURRENCY)

    async def one(key: str) -> s3e.S3Error | None:
        async with gate:
            try:
                s3r.validate_key(key)
                if not may_delete(key):
                    raise s3e.AccessDenied()
                await client.delete(bucket, key)
            except s3e.S3Error as err:
                return err
            except cache.CacheError as err:
                return s3_error(err)
        return None

    keys = [o.key for o in req.objects]
    results = await asyncio.gather(*(one(k) for k in keys))
    deleted = [k for k, r in zip(keys, results, strict=True) if r is None and not req.quiet]
    errors = [(k, r) for k, r in zip(keys, results, strict=True) if r is not None]
    return web.Response(body=s3x.delete_result_xml(deleted, errors), content_type="application/xml")


# ---- buckets ---------------------------------------------------------------------------


async def create_bucket(
    request: web.Request, client: Client, auth: sigv4.AuthResult | None, bucket: str
) -> web.Response:
    """CreateBucket; an optional CreateBucketConfiguration body is accepted (any region)."""
    s3r.validate_bucket_name(bucket)
    if request.content_length or request.headers.get("Transfer-Encoding"):
        body = await UploadBody(request, auth).read(64 * 1024)
        if body.strip():
            root = s3x.parse_xml(body, 64 * 1024)
            if root.tag != "CreateBucketConfiguration":
                raise s3e.MalformedXML()
    try:
        await client.create_bucket(bucket)
    except cache.CacheError as err:
        raise s3_error(err) from None
    return web.Response(status=200, headers={"Location": f"/{bucket}"})


async def delete_bucket(request: web.Request, client: Client, bucket: str) -> web.Response:
    """DeleteBucket: 204; BucketNotEmpty (409) while it holds objects."""
    try:
        await client.delete_bucket(bucket)
    except cache.CacheError as err:
        raise s3_error(err) from None
    return web.Response(status=204)

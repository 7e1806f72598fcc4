"""Multipart uploads: Create, UploadPart, Complete and Abort, passed to the under-store.

S3 under-stores get the same calls; the local one stages parts in a folder
(see ``client.ufs.local``). Completing an upload invalidates the key like any
other write. UploadPartCopy reads its source through the cache.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from xml.sax.saxutils import escape

from aiohttp import web

from ..client import Range
from ..client.client import Client
from ..tiering import errors as cache
from .s3 import errors as s3e
from .s3 import requests as s3r
from .s3 import sigv4
from .s3 import xml as s3x
from .tenants import Tenant
from .writes import MAX_XML_BODY, UploadBody, readable_copy_source, s3_error, user_metadata

MAX_PART = 5 * 1024**3
"""Largest part, as in S3."""
_NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'


def _xml(root: str, fields: list[tuple[str, str]]) -> web.Response:
    body = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields)
    return web.Response(body=f"{_DECL}<{root} {_NS}>{body}</{root}>".encode(), content_type="application/xml")


def _one(query: list[tuple[str, str]], name: str) -> str:
    values = [v for k, v in query if k == name]
    if len(values) != 1 or not values[0]:
        raise s3e.InvalidArgument(f"{name} must be given once", extra={"ArgumentName": name})
    return values[0]


def part_number(query: list[tuple[str, str]]) -> int:
    raw = _one(query, "partNumber")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 5) or not 1 <= int(raw) <= s3x.MAX_PARTS:
        raise s3e.InvalidArgument(
            "Part number must be an integer between 1 and 10000, inclusive",
            extra={"ArgumentName": "partNumber", "ArgumentValue": raw[:16]},
        )
    return int(raw)


async def create(request: web.Request, client: Client, bucket: str, key: str) -> web.Response:
    """CreateMultipartUpload (``POST ?uploads``): InitiateMultipartUploadResult."""
    meta = user_metadata(request.headers)
    ctype = request.headers.get("Content-Type") or None
    try:
        upload_id = await client.create_upload(bucket, key, content_type=ctype, metadata=meta)
    except cache.CacheError as err:
        raise s3_error(err) from None
    return _xml(
        "InitiateMultipartUploadResult", [("Bucket", bucket), ("Key", key), ("UploadId", upload_id)]
    )


async def upload_part(
    request: web.Request,
    client: Client,
    auth: sigv4.AuthResult | None,
    bucket: str,
    key: str,
    query: list[tuple[str, str]],
) -> web.Response:
    """UploadPart (``PUT ?partNumber=N&uploadId=U``): the part's ETag."""
    number, upload_id = part_number(query), _one(query, "uploadId")
    body = UploadBody(request, auth)
    try:
        etag = await client.put_part(bucket, key, upload_id, number, body.iter(), size=body.length)
    except cache.CacheError as err:
        raise s3_error(err) from None
    return web.Response(status=200, headers={"ETag": s3x.quote_etag(etag)})


async def upload_part_copy(
    request: web.Request,
    client: Client,
    bucket: str,
    key: str,
    query: list[tuple[str, str]],
    may_read: Callable[[str, str], bool],
) -> web.Response:
    """UploadPartCopy: a part made of (a range of) another object, read through the cache."""
    number, upload_id = part_number(query), _one(query, "uploadId")
    src_bucket, src_key = readable_copy_source(request, may_read)
    if any(h.lower().startswith("x-amz-copy-source-if") for h in request.headers):
        raise s3e.S3NotImplemented("conditional copies are not supported")
    try:
        info = await client.stat(src_bucket, src_key)
        start, end = s3r.parse_copy_range(request.headers.get("x-amz-copy-source-range"), info.size)
        if end - start > MAX_PART:
            raise s3e.InvalidRequest("The specified copy source is larger than the maximum allowable size")

        async def body() -> AsyncIterator[bytes]:
            if end > start:
                async with client.open(src_bucket, src_key, Range(start, end), info=info) as reader:
                    async for chunk in reader:
                        yield chunk

        etag = await client.put_part(bucket, key, upload_id, number, body(), size=end - start)
    except cache.CacheError as err:
        raise s3_error(err) from None
    now = s3r.iso8601(time.time())
    return _xml("CopyPartResult", [("LastModified", now), ("ETag", s3x.quote_etag(etag))])


def _int_param(query: list[tuple[str, str]], name: str, default: int, top: int) -> int:
    values = [v for k, v in query if k == name]
    if not values:
        return default
    raw = values[0]
    if len(values) > 1 or not (raw.isascii() and raw.isdigit() and len(raw) <= 10):
        raise s3e.InvalidArgument(f"{name} must be a non-negative integer", extra={"ArgumentName": name})
    return min(int(raw), top)


LIST_PARTS_PARAMS = frozenset({"uploadId", "part-number-marker", "max-parts", "encoding-type"})


async def list_parts(
    request: web.Request, client: Client, bucket: str, key: str, query: list[tuple[str, str]]
) -> web.Response:
    """ListParts (``GET /bucket/key?uploadId=U``), from the under-store."""
    upload_id = _one(query, "uploadId")
    marker = _int_param(query, "part-number-marker", 0, s3x.MAX_PARTS)
    max_parts = _int_param(query, "max-parts", 1000, 1000)
    try:
        page = await client.list_parts(bucket, key, upload_id, marker=marker, max_parts=max_parts)
    except cache.CacheError as err:
        raise s3_error(err) from None
    body = s3x.list_parts_xml(
        bucket, key, upload_id, page.parts, marker=marker, max_parts=max_parts,
        truncated=page.truncated, next_marker=page.next_marker,
    )  # fmt: skip
    return web.Response(body=body, content_type="application/xml")


async def list_uploads(
    request: web.Request, client: Client, bucket: str, query: list[tuple[str, str]], tenant: Tenant
) -> web.Response:
    """ListMultipartUploads (``GET /bucket?uploads``): only uploads to keys the tenant may write."""
    q = s3r.parse_marker_listing(query, "upload-id-marker", "max-uploads")
    try:
        page = await client.list_uploads(
            bucket, q.prefix, delimiter=q.delimiter, key_marker=q.key_marker,
            upload_id_marker=q.id_marker, max_uploads=q.max_items,
        )  # fmt: skip
    except cache.CacheError as err:
        raise s3_error(err) from None
    # Filtering keeps the under-store's markers, so paging stays right (pages may come out short).
    uploads = [u for u in page.uploads if tenant.can_write(bucket, u.key)]
    prefixes = [p for p in page.prefixes if tenant.may_see_prefix(bucket, p, write=True)]
    body = s3x.list_uploads_xml(
        bucket, q, uploads, prefixes, truncated=page.truncated,
        next_key_marker=page.next_key_marker, next_upload_id_marker=page.next_upload_id_marker,
    )  # fmt: skip
    return web.Response(body=body, content_type="application/xml")


async def complete(
    request: web.Request,
    client: Client,
    auth: sigv4.AuthResult | None,
    bucket: str,
    key: str,
    query: list[tuple[str, str]],
) -> web.Response:
    """CompleteMultipartUpload (``POST ?uploadId=U``): CompleteMultipartUploadResult."""
    upload_id = _one(query, "uploadId")
    parts = s3x.parse_complete_multipart(await UploadBody(request, auth).read(MAX_XML_BODY))
    try:
        info = await client.complete_upload(
            bucket, key, upload_id, [(p.part_number, p.etag) for p in parts]
        )
    except cache.CacheError as err:
        raise s3_error(err) from None
    return _xml(
        "CompleteMultipartUploadResult",
        [
            ("Location", f"/{bucket}/{key}"),
            ("Bucket", bucket),
            ("Key", key),
            ("ETag", s3x.quote_etag(info.etag)),
        ],
    )


async def abort(
    request: web.Request, client: Client, bucket: str, key: str, query: list[tuple[str, str]]
) -> web.Response:
    """AbortMultipartUpload (``DELETE ?uploadId=U``): 204."""
    try:
        await client.abort_upload(bucket, key, _one(query, "uploadId"))
    except cache.CacheError as err:
        raise s3_error(err) from None
    return web.Response(status=204)

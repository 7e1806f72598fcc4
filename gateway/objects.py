"""GetObject/HeadObject, listings and buckets: S3 semantics on top of the client."""

from __future__ import annotations

import logging

from aiohttp import web

from ..client import ObjectChanged, ObjectInfo, Range
from ..client.client import Chunks, Client, ObjectReader
from .s3 import errors as s3e
from .s3 import requests as s3r
from .s3 import xml as s3x
from .scoped import scoped_page
from .tenants import ListScope, Tenant, decode_token, encode_token

log = logging.getLogger(__name__)

PRESIGN_PARAMS = frozenset(
    {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
        "x-id",
    }
)
"""Query parameters that are part of authentication or SDK bookkeeping, not of the operation."""
OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
GET_OBJECT_PARAMS = PRESIGN_PARAMS | OVERRIDES.keys()
LIST_QUERY_PARAMS = PRESIGN_PARAMS | s3r.LIST_PARAMS
DEFAULT_CONTENT_TYPE = "binary/octet-stream"
"""What S3 answers for an object stored without a Content-Type."""
CHANGED_ATTEMPTS = 3
"""Reads of an object replaced mid-read before giving up with 503 SlowDown."""
WHOLE = 8 * 1024 * 1024
"""Answers up to this size are read whole before the headers go out, so that an object
replaced mid-read is read again (fresh) instead of cut off; larger ones stream."""
JOIN = 256 * 1024
"""Whole answers up to this size are joined and sent with the headers in one write;
above it, the join's copy costs more than the extra write."""


def xml_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/xml")


def error_body(err: s3e.S3Error, request_id: str) -> bytes:
    return s3x.error_xml(err, request_id)


def location_body(region: str) -> bytes:
    return s3x.location_xml("" if region == "us-east-1" else region)


def object_headers(info: ObjectInfo, query: list[tuple[str, str]]) -> dict[str, str]:
    headers = {
        "ETag": f'"{info.etag}"',
        "Last-Modified": s3r.http_date(info.last_modified),
        "Accept-Ranges": "bytes",
        "Content-Type": info.content_type or DEFAULT_CONTENT_TYPE,
    }
    for name, value in info.metadata.items():
        headers[f"x-amz-meta-{name}"] = value
    for name, value in query:
        header = OVERRIDES.get(name)
        if header is not None:
            headers[header] = value
    return headers


async def get_object(
    request: web.Request,
    client: Client,
    bucket: str,
    key: str,
    query: list[tuple[str, str]],
    charge: str = "",
) -> web.StreamResponse:
    """GetObject and HeadObject. A version replaced under us is re-read, fresh.

    Blocks the read brings into the cache are charged to tenant ``charge``.
    """
    for attempt in range(CHANGED_ATTEMPTS):
        info = await client.stat(bucket, key, fresh=attempt > 0, full=True)
        try:
            return await _answer(request, client, info, query, charge)
        except ObjectChanged:
            continue
    # Replaced again during every re-read (a key written many times a second). S3 never
    # answers an unconditional GET with 412; 503 is an answer clients retry, later.
    raise s3e.SlowDown(f"{key} was replaced while it was read, {CHANGED_ATTEMPTS} times")


async def _answer(
    request: web.Request, client: Client, info: ObjectInfo, query: list[tuple[str, str]], charge: str
) -> web.StreamResponse:
    headers = object_headers(info, query)
    if s3r.evaluate_conditions(request.headers, info.etag, info.last_modified) == "not_modified":
        return web.Response(status=304, headers={k: headers[k] for k in ("ETag", "Last-Modified")})
    rng = s3r.parse_range(request.headers.get("Range"), info.size)
    start, end = rng if rng is not None else (0, info.size)
    status = 206 if rng is not None else 200
    if rng is not None:
        headers["Content-Range"] = s3r.content_range(start, end, info.size)
    length = end - start
    if request.method == "HEAD":
        resp = web.Response(status=status, headers=headers)
        resp.headers["Content-Length"] = str(length)
        return resp
    if length == 0:
        return web.Response(status=status, body=b"", headers=headers)
    reader = client.open(info.bucket, info.key, Range(start, end), info=info, tenant=charge)
    async with reader:
        # Pull the first block before sending headers: a missing or replaced object
        # still gets a proper error (or a fresh retry) instead of a broken 200.
        first = await reader.next_span()
        if length > WHOLE:
            return await _stream(request, status, headers, length, first, reader)
        chunks = list(first)
        got = sum(map(len, chunks))
        while got < length:
            span = await reader.next_span()
            chunks += span
            got += sum(map(len, span))
        if length <= JOIN:
            return web.Response(status=status, body=b"".join(chunks), headers=headers)
        return await _stream(request, status, headers, length, chunks, reader)


async def _stream(
    request: web.Request,
    status: int,
    headers: dict[str, str],
    length: int,
    first: Chunks,
    reader: ObjectReader,
) -> web.StreamResponse:
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = length
    await resp.prepare(request)
    sent = 0
    span = first
    try:
        while True:
            # Chunks go out as the worker's socket delivered them: no join, no copy.
            for chunk in span:
                await resp.write(chunk)
                sent += len(chunk)
            if sent >= length:
                break
            span = await reader.next_span()
    except (ConnectionResetError, OSError) as exc:
        log.debug("client went away after %d of %d bytes: %s", sent, length, exc)
        return resp
    except Exception as exc:
        # Headers are gone: the only honest signal left is to cut the connection,
        # so the client sees a short body (an error), never a truncated 200.
        log.warning("stream of %s aborted after %d of %d bytes: %s", request.path[:200], sent, length, exc)
        if request.transport is not None:
            request.transport.abort()
        return resp
    await resp.write_eof()
    return resp


async def list_objects(
    request: web.Request, client: Client, bucket: str, params: s3r.ListParams, scope: ListScope
) -> web.Response:
    """ListObjects V1/V2, limited to what ``scope`` (the tenant's grants) lets it see."""
    if params.version == 2:
        token, start_after = params.continuation_token, params.start_after or ""
    else:
        token, start_after = None, params.marker or ""
    next_cursor: str | None = None
    if scope.passthrough:
        page = await client.ls(
            bucket,
            params.prefix,
            delimiter=params.delimiter or "",
            start_after=start_after,
            token=token,
            max_keys=params.max_keys,
        )
    else:
        cursor = start_after
        if token is not None:
            try:
                cursor = decode_token(token)
            except ValueError:
                raise s3e.InvalidArgument(
                    "The continuation token provided is incorrect",
                    extra={"ArgumentName": "continuation-token"},
                ) from None
        page, next_cursor = await scoped_page(
            client, bucket, scope, params.delimiter or "", cursor, params.max_keys
        )
    entries = [s3x.ListingEntry(e.key, e.size, e.etag, e.last_modified) for e in page.entries]
    if params.version == 2:
        next_token = page.next_token if next_cursor is None else encode_token(next_cursor)
        body = s3x.list_objects_v2_xml(
            bucket, params, entries, page.prefixes, truncated=page.truncated, next_token=next_token
        )
    else:
        next_marker = next_cursor
        if page.truncated and params.delimiter and next_marker is None:
            # S3 sends NextMarker only with a delimiter; it is the last key or prefix returned.
            next_marker = max([e.key for e in entries] + page.prefixes) if entries or page.prefixes else None
        body = s3x.list_objects_v1_xml(
            bucket, params, entries, page.prefixes, truncated=page.truncated, next_marker=next_marker
        )
    return xml_response(body)


async def list_versions(
    request: web.Request, client: Client, bucket: str, query: list[tuple[str, str]], tenant: Tenant
) -> web.Response:
    """ListObjectVersions (``GET /bucket?versions``), from the under-store; only readable keys."""
    q = s3r.parse_marker_listing(query, "version-id-marker", "max-keys")
    page = await client.list_versions(
        bucket, q.prefix, delimiter=q.delimiter, key_marker=q.key_marker,
        version_id_marker=q.id_marker, max_keys=q.max_items,
    )  # fmt: skip
    # Filtering keeps the under-store's markers, so paging stays right (pages may come out short).
    versions = [v for v in page.versions if tenant.can_read(bucket, v.key)]
    prefixes = [p for p in page.prefixes if tenant.may_see_prefix(bucket, p)]
    body = s3x.list_versions_xml(
        bucket, q, versions, prefixes, truncated=page.truncated,
        next_key_marker=page.next_key_marker, next_version_id_marker=page.next_version_id_marker,
    )  # fmt: skip
    return xml_response(body)


async def list_buckets(request: web.Request, client: Client, tenant: Tenant) -> web.Response:
    buckets = [b for b in await client.buckets() if tenant.lists_bucket(b.name)]
    return xml_response(s3x.list_buckets_xml([(b.name, b.created) for b in buckets]))

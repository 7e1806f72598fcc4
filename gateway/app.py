"""The S3-compatible HTTP endpoint: a thin aiohttp adapter over ``gateway.s3`` and the client.

Every request is authenticated (SigV4) before anything else is looked at, then
routed by the raw path (S3 keys are never normalised), served through the
pipecache client, and every failure becomes an S3 XML error whose RequestId
equals the ``x-amz-request-id`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.multiprocess import MultiProcessCollector

from ..client import CacheError, ClientOptions, connect
from ..client.client import Client, LocalBlocks
from ..client.consistency import parse_consistency
from ..client.invalidations import follow_invalidations
from ..client.web import health_handler, metrics_handler
from . import multipart, objects, writes
from .s3 import errors as s3e
from .s3 import hosts as s3h
from .s3 import requests as s3r
from .s3 import sigv4
from .settings import GatewaySettings
from .tenants import FULL_ACCESS, Tenant, Tenants

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's switch to multiprocess mode (read when it is first imported)."""

CLIENT = web.AppKey("client", Client)
SETTINGS = web.AppKey("settings", GatewaySettings)
TENANTS = web.AppKey("tenants", Tenants)
REQUEST_ID = "pc_request_id"
OP = "pc_op"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GatewayMetrics:
    """Counters of one gateway app (its own registry: several apps may share a process).

    Under ``pipecache gateway --processes N`` (prometheus_client's multiprocess mode:
    ``PROMETHEUS_MULTIPROC_DIR`` set), every process writes its values to files in
    that folder and ``/metrics`` answers the sum over all of them, whichever process
    takes the scrape.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.exposed = self.registry
        """What /metrics serves."""
        multiproc_dir = os.environ.get(MULTIPROC_ENV)
        if multiproc_dir:
            self.exposed = CollectorRegistry()
            MultiProcessCollector(self.exposed, multiproc_dir)  # type: ignore[no-untyped-call]
        self.requests = Counter(
            "pipecache_gateway_requests", "S3 requests answered", ["op", "status"], registry=self.registry
        )
        self.sent = Counter(
            "pipecache_gateway_sent_bytes", "Object bytes sent to S3 clients", registry=self.registry
        )
        self._counted: dict[tuple[str, int], Counter] = {}
        # Reported for capacity planning; the cluster does not enforce it yet.
        self.quota = Gauge(
            "pipecache_gateway_tenant_cache_quota_bytes",
            "Cluster-wide cache quota of each tenant (from the tenants file; workers enforce their shares)",
            ["tenant"],
            registry=self.registry,
            multiprocess_mode="max",  # every process reads the same file: one value, not N
        )

    def count(self, op: str, status: int) -> None:
        """One answered request; the labelled child is looked up once per (op, status)."""
        child = self._counted.get((op, status))
        if child is None:
            child = self._counted[(op, status)] = self.requests.labels(op, str(status))
        child.inc()


METRICS = web.AppKey("metrics", GatewayMetrics)


def _request_id() -> str:
    return os.urandom(8).hex().upper()


def error_response(err: s3e.S3Error, request: web.Request) -> web.Response:
    rid = request.get(REQUEST_ID) or _request_id()
    headers = {"x-amz-request-id": rid, **err.headers}
    if isinstance(err, s3e.NotModified):
        return web.Response(status=304, headers=headers)
    if request.method == "HEAD":
        # HEAD answers carry no body: SDKs read the status alone.
        return web.Response(status=err.status, headers=headers)
    body = objects.error_body(err, rid)
    return web.Response(status=err.status, body=body, content_type="application/xml", headers=headers)


@web.middleware
async def s3_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request ids, S3 errors for every failure, and the request counter."""
    request[REQUEST_ID] = _request_id()
    request[OP] = "unknown"
    stalled = False
    try:
        resp = await handler(request)
    except s3e.S3Error as err:
        resp = error_response(err, request)
        stalled = isinstance(err, s3e.RequestTimeout)
    except CacheError as err:
        resp = error_response(s3e.from_cache_error(err), request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.raw_path[:200])
        resp = error_response(s3e.InternalError(), request)
    if not resp.prepared:
        resp.headers.setdefault("x-amz-request-id", request[REQUEST_ID])
        resp.headers.setdefault("Server", "pipecache")
        if request.body_exists and not request.content.is_eof():
            # Refused before its body was read (too large, unauthorised...): the rest of
            # the body is still coming, so this connection cannot carry another request.
            resp.force_close()
    if stalled:
        await _answer_and_close(request, resp)
    metrics = request.app[METRICS]
    metrics.count(request[OP], resp.status)
    if request[OP] == "get_object" and resp.status in (200, 206):
        metrics.sent.inc(resp.body_length)
    return resp


async def _answer_and_close(request: web.Request, resp: web.StreamResponse) -> None:
    """Send ``resp`` now, then close the connection without waiting for the rest of the body.

    aiohttp would otherwise linger (read and drop the unread body, up to 10 s)
    before closing: pointless for a client whose body has stopped coming. The
    transport's close sends what is buffered first.
    """
    resp.force_close()
    with contextlib.suppress(ConnectionError):
        await resp.prepare(request)
        await resp.write_eof()
    request.protocol.force_close()


def authenticate(request: web.Request, target: str) -> tuple[sigv4.AuthResult | None, Tenant]:
    """SigV4 (header or presigned) before any lookup; raises the S3 error S3 would.

    Returns what checking the body needs (None when unsigned) and the tenant
    the request acts for: unsigned reads act as the anonymous tenant (public-read
    buckets only) when a tenants file names public buckets.
    """
    if request.app[SETTINGS].anonymous:
        return None, FULL_ACCESS
    tenants = request.app[TENANTS]
    path, _, query = target.partition("?")
    signed = sigv4.SignedRequest(request.method, path, query, request.headers)
    if tenants.public_read and request.method in ("GET", "HEAD") and sigv4.auth_kind(signed) == "none":
        return None, tenants.anonymous
    result = sigv4.verify_request(signed, tenants.secret, time.time())
    if request.method in ("GET", "HEAD") and result.content_sha256 not in (None, sigv4.EMPTY_SHA256):
        if request.content_length:
            raise s3e.S3NotImplemented("request bodies on GET and HEAD are not supported")
        raise s3e.XAmzContentSHA256Mismatch()
    return result, tenants.tenant(result.access_key)


def allow(granted: bool) -> None:
    """AccessDenied unless ``granted``: checked before anything is looked up."""
    if not granted:
        raise s3e.AccessDenied()


async def dispatch(request: web.Request) -> web.StreamResponse:
    authority, target = s3h.split_target(request.raw_path)
    auth, tenant = authenticate(request, target)
    host = authority if authority is not None else request.headers.get("Host")
    bucket, key = s3h.parse_target(target, s3h.host_bucket(host, request.app[SETTINGS].domains))
    query = s3r.parse_query(target.partition("?")[2])
    names = {n for n, _ in query}
    method = request.method
    if method not in ("GET", "HEAD"):
        return await _write_op(request, auth, tenant, bucket, key, query)
    if bucket is None:
        request[OP] = "list_buckets"
        allow(auth is not None or request.app[SETTINGS].anonymous)
        return await objects.list_buckets(request, request.app[CLIENT], tenant)
    if key is None:
        return await _bucket_op(request, tenant, bucket, query, names)
    if "uploadId" in names and not names - objects.PRESIGN_PARAMS - multipart.LIST_PARTS_PARAMS:
        request[OP] = "list_parts"
        allow(method == "GET" and tenant.can_write(bucket, key))
        return await multipart.list_parts(request, request.app[CLIENT], bucket, key, query)
    if names - objects.GET_OBJECT_PARAMS:
        request[OP] = "object_subresource"
        raise s3e.S3NotImplemented(f"?{sorted(names - objects.GET_OBJECT_PARAMS)[0]} is not supported")
    request[OP] = "head_object" if method == "HEAD" else "get_object"
    allow(tenant.can_read(bucket, key))
    charge = tenant.name if tenant.charged else ""
    return await objects.get_object(request, request.app[CLIENT], bucket, key, query, charge)


async def _bucket_op(
    request: web.Request, tenant: Tenant, bucket: str, query: list[tuple[str, str]], names: set[str]
) -> web.StreamResponse:
    client = request.app[CLIENT]
    if request.method == "HEAD" or "location" in names:
        allow(tenant.knows_bucket(bucket))
    if request.method == "HEAD":
        request[OP] = "head_bucket"
        await client.head_bucket(bucket)
        return web.Response(status=200, headers={"x-amz-bucket-region": request.app[SETTINGS].region})
    if "location" in names:
        request[OP] = "get_bucket_location"
        await client.head_bucket(bucket)
        return objects.xml_response(objects.location_body(request.app[SETTINGS].region))
    if "uploads" in names or "versions" in names:
        op = "uploads" if "uploads" in names else "versions"
        request[OP] = f"list_{op}"
        allow(tenant.knows_bucket(bucket))
        if op == "uploads":
            return await multipart.list_uploads(request, client, bucket, query, tenant)
        return await objects.list_versions(request, client, bucket, query, tenant)
    unsupported = names - objects.LIST_QUERY_PARAMS
    if unsupported:
        request[OP] = "bucket_subresource"
        raise s3e.S3NotImplemented(f"?{sorted(unsupported)[0]} is not supported")
    params = s3r.parse_list_params(query)
    request[OP] = f"list_objects_v{params.version}"
    try:
        scope = tenant.list_scope(bucket, params.prefix, params.delimiter or "")
    except ValueError as exc:
        raise s3e.S3NotImplemented(f"listing with {exc}") from None
    allow(scope is not None)
    assert scope is not None
    return await objects.list_objects(request, client, bucket, params, scope)


async def _write_op(
    request: web.Request,
    auth: sigv4.AuthResult | None,
    tenant: Tenant,
    bucket: str | None,
    key: str | None,
    query: list[tuple[str, str]],
) -> web.StreamResponse:
    """PUT, POST and DELETE: object writes, multipart uploads, DeleteObjects, buckets."""
    client, method = request.app[CLIENT], request.method
    extra = sorted({n for n, _ in query} - objects.PRESIGN_PARAMS)
    request[OP] = method.lower()
    if bucket is None or method not in ("PUT", "POST", "DELETE"):
        raise s3e.MethodNotAllowed()
    if key is None:
        if method == "POST" and extra == ["delete"]:
            request[OP] = "delete_objects"
            allow(tenant.knows_bucket(bucket))
            return await writes.delete_objects(
                request, client, auth, bucket, lambda k: tenant.can_write(bucket, k)
            )
        if extra:
            raise s3e.S3NotImplemented(f"?{extra[0]} is not supported")
        allow(tenant.can_write_bucket(bucket))
        if method == "PUT":
            request[OP] = "create_bucket"
            return await writes.create_bucket(request, client, auth, bucket)
        if method == "DELETE":
            request[OP] = "delete_bucket"
            return await writes.delete_bucket(request, client, bucket)
        raise s3e.MethodNotAllowed()
    allow(tenant.can_write(bucket, key))
    if extra == ["uploads"] and method == "POST":
        request[OP] = "create_multipart_upload"
        return await multipart.create(request, client, bucket, key)
    if extra == ["partNumber", "uploadId"] and method == "PUT" and "x-amz-copy-source" in request.headers:
        request[OP] = "upload_part_copy"
        return await multipart.upload_part_copy(request, client, bucket, key, query, tenant.can_read)
    if extra == ["partNumber", "uploadId"] and method == "PUT":
        request[OP] = "upload_part"
        return await multipart.upload_part(request, client, auth, bucket, key, query)
    if extra == ["uploadId"] and method == "POST":
        request[OP] = "complete_multipart_upload"
        return await multipart.complete(request, client, auth, bucket, key, query)
    if extra == ["uploadId"] and method == "DELETE":
        request[OP] = "abort_multipart_upload"
        return await multipart.abort(request, client, bucket, key, query)
    if extra:
        # ListParts (GET), UploadPartCopy, tagging, ACLs...
        raise s3e.S3NotImplemented(f"?{extra[0]} is not supported")
    if method == "PUT" and "x-amz-copy-source" in request.headers:
        request[OP] = "copy_object"
        return await writes.copy_object(request, client, bucket, key, tenant.can_read)
    if method == "PUT":
        request[OP] = "put_object"
        return await writes.put_object(request, client, auth, bucket, key)
    if method == "DELETE":
        request[OP] = "delete_object"
        return await writes.delete_object(request, client, bucket, key)
    raise s3e.MethodNotAllowed()


async def follow_consistency(client: Client, local_max: float) -> None:
    """Size the gateway's metadata reuse to the master's consistency mode, once it answers."""
    delay = 0.1
    while True:
        try:
            cfg = await client.config(timeout=5)
            break
        except CacheError as exc:
            log.debug("master config not available yet: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    try:
        mode = parse_consistency(cfg.consistency)
    except ValueError:
        log.warning("master sent an unknown consistency mode %r: metadata is not reused", cfg.consistency)
        return
    client.set_metadata_ttl(mode.reuse_for(local_max))
    log.info("consistency %s: object metadata reused for %gs", mode, mode.reuse_for(local_max))
    if mode.metadata_ttl > 0:
        # Writes through any gateway reach this one through the feed: reuse for the mode's full length.
        await follow_invalidations(client, mode, local_max)


QUOTA_REFRESH = 60.0
"""Seconds between re-registrations of the tenants' quotas (a master without a data
folder forgets them when it restarts)."""


async def register_quotas(client: Client, tenants: Tenants) -> None:
    """Tell the master every tenant's cache quota at start, then again every ``QUOTA_REFRESH``.

    Idempotent: every gateway replica sends the same. Tenants without a quota
    are sent as unlimited, so removing a quota from the file lifts it.
    """
    quotas = {t.name: t.cache_quota for t in tenants.tenants if t.cache_quota is not None}
    unlimited = [t.name for t in tenants.tenants if t.cache_quota is None]
    delay = 0.1
    while True:
        try:
            await client.set_quotas(quotas, unlimited, timeout=5)
        except CacheError as exc:
            log.debug("cannot register the tenants' cache quotas yet: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        delay = 0.1
        await asyncio.sleep(QUOTA_REFRESH)


def make_app(settings: GatewaySettings, local: LocalBlocks | None = None) -> web.Application:
    """The gateway application; its client to the cluster lives for the app's lifetime.

    ``local``: the blocks of a worker in this process, read without HTTP.
    """
    settings.validate()
    app = web.Application(middlewares=[s3_middleware], client_max_size=1024**2)
    domains = tuple(s3h.parse_domain(d) for d in settings.domains)
    app[SETTINGS] = dataclasses.replace(settings, domains=domains)
    app[TENANTS] = tenants = settings.tenants()
    app[METRICS] = metrics = GatewayMetrics()
    app[writes.BODY_TIMEOUT] = settings.body_timeout
    for t in tenants.tenants:
        if t.cache_quota is not None:
            metrics.quota.labels(t.name).set(t.cache_quota)
    log.info("%d tenant(s), %d public-read bucket(s)", len(tenants.tenants), len(tenants.public_read))
    if settings.ufs_write_outlasts_sdks():
        log.warning(
            "a write to a silent under-store may take %.0f s to fail (--ufs-write-timeout x "
            "--ufs-write-attempts): S3 SDKs give up after 60 s by default and retry meanwhile",
            settings.ufs_timeouts().silent_for(),
        )

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        # Metadata is not reused until the master's consistency mode is known.
        opts = ClientOptions(
            read_ahead=settings.read_ahead,
            metadata_ttl=0,
            ufs_timeouts=settings.ufs_timeouts(),
            lean_blocks=settings.lean_blocks,
        )
        async with connect(settings.master, opts) as client:
            client.local = local
            app[CLIENT] = client
            tasks = [asyncio.create_task(follow_consistency(client, settings.metadata_ttl))]
            if any(t.charged for t in tenants.tenants):
                tasks.append(asyncio.create_task(register_quotas(client, tenants)))
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    app.cleanup_ctx.append(client_ctx)
    # /health and /metrics would be valid bucket names: they are served only without
    # a signature, which no S3 client sends, so they never shadow a bucket.
    app.router.add_route("*", "/{tail:.*}", _route)
    return app


async def _route(request: web.Request) -> web.StreamResponse:
    # The path first: parsing the query of every request just to rule these out cost time.
    if request.path in ("/health", "/metrics") and request.method == "GET":
        if "authorization" not in request.headers and "X-Amz-Signature" not in request.query:
            if request.path == "/health":
                return await health_handler(request)
            return await metrics_handler(request.app[METRICS].exposed)(request)
    return await dispatch(request)


__all__ = ["GatewaySettings", "make_app"]

"""aiohttp handlers of the worker: a thin adapter over ``blocks``.

``GET /blocks/{id}`` answers from memory (a memoryview of the stored bytes,
never copied), from SSD (``loop.sendfile`` from the verified block file), or
from the under-store on a miss. ``HEAD /blocks/{id}`` answers from what is
resident only, and never fetches: it is a cheap "is it cached here?" probe
(404 BlockNotFound when it is not).

SSD responses follow ``aiohttp.web_fileresponse.FileResponse``: all the I/O
happens in ``prepare()``, which aiohttp calls after the handler and the
middlewares have returned. Headers go out first (a ``StreamResponse`` sends
them at once), then ``loop.sendfile`` writes the payload straight from the
file at its offset, then ``write_eof`` closes the message through aiohttp's
writer, so its state matches what was sent. A loop without sendfile (uvloop
raises NotImplementedError) and ``settings.sendfile = False`` write a view of
the mapped file through the writer instead (``SsdHandle.view``): still no copy
before the socket's. Connection errors raised in ``prepare`` are handled by
aiohttp as client disconnects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter

from ..client.protocol import H_BLOCK_LENGTH, H_TIER
from ..client.web import error_response
from ..tiering.errors import BlockNotFound, CacheError, InvalidRange
from ..tiering.ssd import SsdHandle
from .blocks import BlockService, ByteRange, block_length, parse_range, parse_ref

log = logging.getLogger(__name__)

SERVICE: web.AppKey[BlockService] = web.AppKey("block_service", BlockService)
USE_SENDFILE: web.AppKey[bool] = web.AppKey("use_sendfile", bool)

OCTETS = "application/octet-stream"


def _headers(tier: str, total: int, rng: ByteRange | None) -> dict[str, str]:
    headers = {H_TIER: tier, H_BLOCK_LENGTH: str(total), hdrs.ACCEPT_RANGES: "bytes"}
    if rng is not None:
        headers[hdrs.CONTENT_RANGE] = rng.content_range(total)
    return headers


class _BlockResponse(web.StreamResponse):
    """A block (or a range of it) with the worker's headers; subclasses send the payload."""

    def __init__(self, tier: str, total: int, rng: ByteRange | None) -> None:
        super().__init__(status=200 if rng is None else 206, headers=_headers(tier, total, rng))
        self.content_type = OCTETS
        self.content_length = total if rng is None else rng.length

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        writer = await super().prepare(request)
        assert writer is not None
        if request.method != hdrs.METH_HEAD and self.content_length:
            await self._send_payload(request, writer)
        await super().write_eof()
        return writer

    async def _send_payload(self, request: web.BaseRequest, writer: AbstractStreamWriter) -> None:
        """Nothing to send (HEAD and empty blocks)."""


class MemoryBlockResponse(_BlockResponse):
    """Writes a memoryview of the block; aiohttp's writer hands it to the transport uncopied."""

    def __init__(self, view: memoryview, tier: str, total: int, rng: ByteRange | None) -> None:
        super().__init__(tier, total, rng)
        self._view = view if rng is None else view[rng.start : rng.end]

    async def _send_payload(self, request: web.BaseRequest, writer: AbstractStreamWriter) -> None:
        await writer.write(self._view)


class SsdBlockResponse(_BlockResponse):
    """Sends a verified SSD block file zero-copy; closes the handle when done.

    ``on_done`` runs once the response is finished (sent or failed): the worker
    uses it to start the promotion to memory without delaying the response.
    """

    def __init__(
        self,
        handle: SsdHandle,
        total: int,
        rng: ByteRange | None,
        *,
        use_sendfile: bool,
        on_done: Callable[[], None],
    ) -> None:
        super().__init__("ssd", total, rng)
        self._handle = handle
        self._from = 0 if rng is None else rng.start
        """Where the answer starts in the payload."""
        self._use_sendfile = use_sendfile
        self._on_done = on_done

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        try:
            return await super().prepare(request)
        finally:
            self.release()

    def release(self) -> None:
        """Close the file and run ``on_done`` (idempotent)."""
        if not self._handle.file.closed:
            self._handle.close()
            self._on_done()

    async def _send_payload(self, request: web.BaseRequest, writer: AbstractStreamWriter) -> None:
        count = self.content_length
        assert count is not None
        if not self._use_sendfile or self.compression:
            await self._send_mapped(writer, count)
            return
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection lost before the block was sent")
        loop = asyncio.get_running_loop()
        try:
            await loop.sendfile(transport, self._handle.file, self._handle.offset + self._from, count)
        except NotImplementedError:  # uvloop and other loops without sendfile
            await self._send_mapped(writer, count)

    async def _send_mapped(self, writer: AbstractStreamWriter, count: int) -> None:
        # One write of the mapped file: the socket copies from the page cache, with
        # no reads into buffers and no executor round trip per chunk.
        try:
            view = self._handle.view(self._from, self._from + count)
        except CacheError as exc:
            # Verified when opened, truncated since. Headers are gone: drop the connection.
            raise ConnectionResetError(str(exc)) from None
        await writer.write(view)
        await writer.drain()


def _invalid_range(err: InvalidRange, total: int) -> web.Response:
    resp: web.Response = error_response(err)
    resp.headers[hdrs.CONTENT_RANGE] = f"bytes */{total}"
    return resp


async def get_block(request: web.Request) -> web.StreamResponse:
    """GET /blocks/{id}?b=&k=&e=&i=&s=&bs= with an optional in-block Range."""
    svc = request.app[SERVICE]
    bid, ref = parse_ref(request.match_info["block_id"], request.query)
    total = block_length(ref)
    try:
        rng = parse_range(request.headers.get(hdrs.RANGE), total)
    except InvalidRange as err:
        return _invalid_range(err, total)
    found = await svc.find(bid, ref)
    svc.metrics.served(found.tier, total if rng is None else rng.length, bid)
    if found.handle is not None:
        return SsdBlockResponse(
            found.handle,
            total,
            rng,
            use_sendfile=request.app[USE_SENDFILE],
            on_done=lambda: svc.promote_later(bid, total),
        )
    return MemoryBlockResponse(found.view, found.tier, total, rng)


async def head_block(request: web.Request) -> web.StreamResponse:
    """HEAD /blocks/{id}: the GET headers of a resident block; 404 BlockNotFound otherwise."""
    svc = request.app[SERVICE]
    bid, ref = parse_ref(request.match_info["block_id"], request.query)
    total = block_length(ref)
    try:
        rng = parse_range(request.headers.get(hdrs.RANGE), total)
    except InvalidRange as err:
        return _invalid_range(err, total)
    tier = svc.store.tier_of(bid)
    if tier is None:
        raise BlockNotFound(f"block {bid} is not resident on this worker")
    return _BlockResponse(tier, total, rng)


@web.middleware
async def count_requests(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Count block requests by tier and status (outermost: sees error responses too)."""
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        _count(request, "none", exc.status)
        raise
    _count(request, resp.headers.get(H_TIER, "none"), resp.status)
    return resp


def _count(request: web.Request, tier: str, status: int) -> None:
    if request.match_info.route.name in ("get_block", "head_block"):
        request.app[SERVICE].metrics.requests.labels(tier, str(status)).inc()

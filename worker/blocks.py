"""Block serving logic, kept apart from aiohttp: request checks, ranges, misses.

``parse_ref`` and ``parse_range`` are pure: they turn the request's path,
query and Range header into typed values or typed errors. ``BlockService``
owns what a block request touches besides HTTP: the tiered store (blocking
calls go to the worker's own small executor), the under-store (reads bounded
by a semaphore, concurrent misses of one block sharing one read), and
background promotions.

Ranges. Only one ``bytes=`` range, relative to the block, is understood:
``a-b``, ``a-`` and ``-n``. A header that does not parse, another unit, or
several ranges answer 400 BadRequest instead of being ignored: the only
callers are pipecache's own client and gateway, which always send one
well-formed range, so a malformed one is a bug that should be loud rather
than silently answered with a larger body. A well-formed range that selects
no byte of the block answers 416 InvalidRange (with ``Content-Range: bytes */N``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from ..client.protocol import BlockRef
from ..client.singleflight import SingleFlight
from ..client.ufs.base import UnderStore
from ..tiering.blocks import BlockId, block_extent, is_block_id
from ..tiering.errors import (
    BadRequest,
    CacheError,
    InvalidRange,
    NoCapacity,
    NoWorkers,
    UnderStoreError,
)
from ..tiering.promotion import PromotionFilter
from ..tiering.ssd import SsdHandle
from ..tiering.store import TieredStore
from .metrics import WorkerMetrics

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


# ---- pure request parsing -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes [start, end) of a block."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self, total: int) -> str:
        return f"bytes {self.start}-{self.end - 1}/{total}"


def parse_ref(raw_id: str, query: Mapping[str, str]) -> tuple[BlockId, BlockRef]:
    """The block id of the path and the BlockRef of the query; BadRequest unless they agree.

    The id is recomputed from the ref, so nobody can plant bytes under another
    block's id by asking for one id with another object's coordinates.
    """
    if not is_block_id(raw_id):
        raise BadRequest(f"malformed block id {raw_id[:40]!r}")
    ref = BlockRef.from_query(query)
    expected = ref.block_id()
    if expected != raw_id:
        raise BadRequest(f"block id {raw_id} does not match the query (it names block {expected})")
    return raw_id, ref


def block_length(ref: BlockRef) -> int:
    """Length of the block ``ref`` names (0 for the lone block of an empty object)."""
    return 0 if ref.size == 0 else block_extent(ref.index, ref.size, ref.block_size)[1]


def parse_range(header: str | None, length: int) -> ByteRange | None:
    """The in-block range of a ``Range`` header; None for the whole block.

    BadRequest for a header that is not one ``bytes=`` range; InvalidRange for
    a range that selects none of the block's ``length`` bytes. An end past the
    block is clipped to it, as RFC 9110 says.
    """
    if header is None:
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        raise BadRequest(f"unsupported Range {header[:60]!r}: use bytes=a-b")
    if "," in spec:
        raise BadRequest("multiple ranges are not supported")
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not _digits(first, last):
        raise BadRequest(f"malformed Range {header[:60]!r}")
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0 or length == 0:
            raise InvalidRange(f"range {header!r} selects nothing of a {length} byte block")
        return ByteRange(max(length - n, 0), length)
    start = int(first)
    end = length if not last else int(last) + 1
    if last and end <= start:
        raise BadRequest(f"malformed Range {header[:60]!r}: last byte before first")
    if start >= length:
        raise InvalidRange(f"range {header!r} starts past the end of a {length} byte block")
    return ByteRange(start, min(end, length))


def _digits(first: str, last: str) -> bool:
    """Both parts are digits or empty, and not both empty."""
    if not first and not last:
        return False
    return all(p == "" or (p.isascii() and p.isdigit()) for p in (first, last))


# ---- the under-store, once known ------------------------------------------------


class UnderStoreSlot:
    """The under-store misses read from, set when the master names it at registration."""

    def __init__(self) -> None:
        self._ufs: UnderStore | None = None
        self._ready = asyncio.Event()
        self.problem = "it has not registered with the master yet"
        """Why there is no under-store yet (told to clients in the 503)."""

    @property
    def current(self) -> UnderStore | None:
        return self._ufs

    def set(self, ufs: UnderStore) -> UnderStore | None:
        """Install ``ufs``; returns the one it replaces (for the caller to close)."""
        old, self._ufs = self._ufs, ufs
        self._ready.set()
        return old

    async def get(self, patience: float) -> UnderStore:
        """The under-store, waiting up to ``patience`` seconds for the first registration."""
        if self._ufs is None:
            try:
                await asyncio.wait_for(self._ready.wait(), patience)
            except TimeoutError:
                raise NoWorkers(
                    f"this worker cannot read from the under-store yet: {self.problem}; retry shortly"
                ) from None
        assert self._ufs is not None
        return self._ufs


def check_length(block_id: str, actual: int, expected: int) -> None:
    # The id covers bucket, key, ETag and index but not the object size or the
    # block size, so a query can name a resident block with other extents.
    if actual != expected:
        raise BadRequest(f"block {block_id} has {actual} bytes here but the query describes {expected}")


@dataclass(slots=True)
class Found:
    """Where a block request is answered from: a view of its bytes, or an open SSD file."""

    tier: str
    """memory, ssd or ufs (fetched now)."""
    view: memoryview = memoryview(b"")
    handle: SsdHandle | None = None
    """Set for the SSD tier; the caller closes it."""


# ---- the service ----------------------------------------------------------------------


class BlockService:
    """What block requests do besides HTTP. One per app, built in its cleanup context."""

    def __init__(
        self,
        store: TieredStore,
        executor: Executor,
        metrics: WorkerMetrics,
        *,
        ufs_concurrency: int,
        ready_timeout: float,
        promote_on_hit: bool,
    ) -> None:
        self.store = store
        self.executor = executor
        self.metrics = metrics
        self.ufs = UnderStoreSlot()
        self._ready_timeout = ready_timeout
        self._promote_on_hit = promote_on_hit
        self._ufs_limit = asyncio.Semaphore(ufs_concurrency)
        self._flights: SingleFlight[BlockId, bytes] = SingleFlight("fetch")
        self._promoting: dict[BlockId, asyncio.Task[None]] = {}
        self._promotions = PromotionFilter(store.capacity()["memory"])
        self._closed = False

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking store call in the worker's executor."""
        loop = asyncio.get_running_loop()
        if kwargs:
            return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))
        return await loop.run_in_executor(self.executor, fn, *args)

    async def open_ssd(self, block_id: BlockId) -> SsdHandle | None:
        """A verified SSD handle, or None (not there, or corrupt and now dropped)."""
        return await self.run(self.store.open_ssd, block_id)

    async def find(self, block_id: BlockId, ref: BlockRef) -> Found:
        """The block from memory, else SSD (verified), else the under-store (and kept)."""
        total = block_length(ref)
        self._promotions.read(total)  # every read moves the promotion filter's clock
        view = self.store.get_memory(block_id)
        if view is not None:
            check_length(block_id, view.nbytes, total)
            return Found("memory", view)
        if self.store.tier_of(block_id) == "ssd":
            handle = await self.open_ssd(block_id)
            if handle is not None:  # else gone, or corrupt and dropped: a miss
                try:
                    check_length(block_id, handle.length, total)
                except BadRequest:
                    handle.close()
                    raise
                return Found("ssd", handle=handle)
        if total == 0:  # the lone block of an empty object: nothing to read
            return Found("ufs")
        data = await self.fetch(block_id, ref)
        check_length(block_id, len(data), total)
        return Found("ufs", memoryview(data))

    async def fetch(self, block_id: BlockId, ref: BlockRef) -> bytes:
        """The block's bytes from the under-store, stored on the way; one read per block at once.

        The block is charged to ``ref.tenant``: with concurrent misses, to the
        first caller's (the one whose read runs).
        """
        return await self._flights.do(block_id, lambda: self._fetch(block_id, ref))

    async def _fetch(self, block_id: BlockId, ref: BlockRef) -> bytes:
        start, length = block_extent(ref.index, ref.size, ref.block_size)
        ufs = await self.ufs.get(self._ready_timeout)
        async with self._ufs_limit:
            self.metrics.ufs_request()
            data: bytes = await ufs.get_range(ref.bucket, ref.key, start, length, ref.etag)
        if len(data) != length:
            raise UnderStoreError(
                f"under-store returned {len(data)} bytes for block {ref.index} of "
                f"{ref.bucket}/{ref.key}, expected {length}"
            )
        self.metrics.ufs_read(length)
        await self._keep(block_id, data, ref.tenant)
        return data

    async def _keep(self, block_id: BlockId, data: bytes, tenant: str) -> None:
        """Put a fetched block in the store; on failure it is still served (pass-through)."""
        try:
            await self.run(self.store.put, block_id, data, tenant)
        except NoCapacity as exc:
            log.debug("serving block %s uncached: %s", block_id, exc)
        except (CacheError, OSError) as exc:
            log.warning("could not cache block %s, serving it uncached: %s", block_id, exc)

    def promote_later(self, block_id: BlockId, nbytes: int) -> None:
        """Copy an SSD block of ``nbytes`` into memory in the background (after serving it),
        when it is read again soon enough to be worth it (see ``tiering.promotion``)."""
        if self._closed or not self._promote_on_hit or block_id in self._promoting:
            return
        if not self._promotions.hit(block_id, nbytes):
            return
        task = asyncio.create_task(self._promote(block_id), name=f"promote:{block_id}")
        self._promoting[block_id] = task
        task.add_done_callback(lambda _: self._promoting.pop(block_id, None))

    async def _promote(self, block_id: BlockId) -> None:
        try:
            await self.run(self.store.promote, block_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.metrics.promotions_failed.inc()
            log.exception("promoting block %s to memory failed", block_id)

    async def close(self) -> None:
        """Cancel fetches and promotions in flight; close the under-store."""
        self._closed = True
        tasks = list(self._promoting.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._flights.close()
        ufs = self.ufs.current
        if ufs is not None:
            await ufs.close()

"""The async pipecache client: metadata from the master, bytes straight from workers.

Reads never pass through the master: the client keeps the worker list (refreshed
in the background), computes each block's owner by rendezvous placement, and
GETs the block from that worker, which fetches it from the under-store on a miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import aiohttp

from ..tiering.blocks import BlockSpan, spans
from ..tiering.errors import (
    CacheError,
    ChecksumMismatch,
    InterfaceError,
    InvalidRange,
    NoWorkers,
    ObjectChanged,
)
from ..tiering.placement import Candidate, rank
from . import protocol as p
from .blockfetch import BlockFetcher, FetchError, Unsupported
from .holds import HoldsApi
from .jobs import Job
from .rpc import Empty, Unreachable, call, cluster_token, raise_for_error, token_headers
from .ufs import UnderStore, UnderStoreTimeouts, open_understore
from .ufs.base import PartsPage, UploadsPage, VersionsPage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Tuning of a client; the defaults suit a gateway or a training job."""

    timeout: float = 60.0
    """Seconds for one RPC or one block GET."""
    stall_timeout: float = 10.0
    """Seconds a block GET may take to connect, or go without receiving a byte, before the
    next worker is asked."""
    read_ahead: int = 4
    """Blocks fetched ahead of the reader when streaming (memory bound: read_ahead x block size)."""
    metadata_ttl: float = 5.0
    """Seconds an object's metadata is reused without asking the master (0: always ask)."""
    metadata_entries: int = 100_000
    stale_if_error: float = 300.0
    """Seconds past its TTL that metadata is still used while the master cannot be reached
    (0: never). Blocks are bound to the ETag, so this serves at worst the previous version."""
    workers_ttl: float = 2.0
    """Seconds between refreshes of the worker list."""
    connections: int = 256
    """Connection pool size towards workers and the master."""
    lean_blocks: bool = True
    """Read blocks from workers with the lean keep-alive client of ``blockfetch`` (bodies land
    in one buffer, unparsed); False: through aiohttp's client, like every other request."""
    token: str | None = dataclasses.field(default_factory=cluster_token)
    """The cluster token sent to the master and workers (default: $PIPECACHE_CLUSTER_TOKEN)."""
    ufs: str | None = None
    """Under-store URI for writes (None: the master's, read from its config on first write)."""
    ufs_timeouts: UnderStoreTimeouts | None = None
    """How long the client's own under-store calls (writes) may go without a byte, and how
    often they are tried (None: ``UnderStoreTimeouts()``'s defaults)."""


Chunks = list[bytes | bytearray | memoryview]
"""A block span as the pieces it arrived in (socket chunks, or one view of a local block)."""


class LocalBlocks(Protocol):
    """Blocks of a worker running in this very process (an S3 endpoint inside a worker).

    The client reads that worker's blocks through it instead of over HTTP: no
    socket, no copy; memory-tier blocks come back as views of the stored bytes.
    """

    @property
    def worker_id(self) -> str | None:
        """The worker's id, or None while it is starting (then HTTP is used)."""

    async def read_span(self, ref: p.BlockRef, start: int, end: int) -> Chunks:
        """Bytes [start, end) of the block ``ref`` names, as that worker would serve them."""


@dataclass(frozen=True, slots=True)
class Range:
    """Bytes [start, end) of an object; ``end`` None means to the end."""

    start: int = 0
    end: int | None = None


class _MetaCache:
    """A small TTL + LRU map of object metadata (the master holds the long-lived copy)."""

    def __init__(self, ttl: float, entries: int) -> None:
        self._ttl, self._max = ttl, entries
        self._items: OrderedDict[tuple[str, str], tuple[float, p.ObjectInfo]] = OrderedDict()

    def get(self, bucket: str, key: str, stale: float = 0.0) -> p.ObjectInfo | None:
        """The entry, if it expired no more than ``stale`` seconds ago."""
        item = self._items.get((bucket, key))
        if item is None or item[0] + stale < time.monotonic():
            return None
        self._items.move_to_end((bucket, key))
        return item[1]

    def put(self, info: p.ObjectInfo) -> None:
        # Never longer than the master still trusts it (``fresh_for``, when it says).
        ttl = min(self._ttl, info.fresh_for) if info.fresh_for > 0 else self._ttl
        if ttl <= 0:
            return
        self._items[(info.bucket, info.key)] = (time.monotonic() + ttl, info)
        self._items.move_to_end((info.bucket, info.key))
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def drop(self, bucket: str, key: str) -> None:
        self._items.pop((bucket, key), None)

    def retune(self, ttl: float) -> None:
        """A new TTL; what is cached goes (its deadlines were set under the old one)."""
        self._ttl = ttl
        self._items.clear()

    def drop_prefix(self, bucket: str, prefix: str) -> None:
        for k in [k for k in self._items if k[0] == bucket and k[1].startswith(prefix)]:
            del self._items[k]

    def clear(self) -> None:
        self._items.clear()

    def cap(self, ttl: float) -> None:
        """A new, shorter TTL that also cuts what is cached down to it (entries stay for stale use)."""
        self._ttl = ttl
        limit = time.monotonic() + ttl
        for k, (deadline, info) in self._items.items():
            if deadline > limit:
                self._items[k] = (limit, info)


class Client(HoldsApi):
    """A connection to a pipecache cluster. Create it with :func:`connect`."""

    def __init__(self, master: str, options: ClientOptions | None = None) -> None:
        self.master = master.rstrip("/")
        self.options = options or ClientOptions()
        self._session: aiohttp.ClientSession | None = None
        self._blocks: BlockFetcher | None = None
        self._meta = _MetaCache(self.options.metadata_ttl, self.options.metadata_entries)
        self._workers: dict[str, p.WorkerInfo] = {}
        self._candidates: list[Candidate] = []
        self._workers_at = 0.0
        self._refresh: asyncio.Task[None] | None = None
        self._ufs: UnderStore | None = None
        self._ufs_lock = asyncio.Lock()
        self._config: p.ConfigReply | None = None
        self.local: LocalBlocks | None = None
        """A worker in this process, read without HTTP (see :class:`LocalBlocks`)."""
        self._generation = 0
        """Bumped by every invalidation: a stat that started before one must not cache its answer."""

    # ---- lifecycle --------------------------------------------------------

    async def start(self) -> Client:
        if self._session is None:
            conn = aiohttp.TCPConnector(limit=self.options.connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=conn,
                auto_decompress=False,
                headers=token_headers(self.options.token),
                # Blocks are kept whole anyway: the default 64 KiB buffer paused the socket every 128 KiB.
                read_bufsize=1 << 20,
            )
        if self.options.lean_blocks and self._blocks is None:
            self._blocks = BlockFetcher(self.options.connections, token_headers(self.options.token))
        return self

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresh
        if self._ufs is not None:
            ufs, self._ufs = self._ufs, None
            await ufs.close()
        if self._blocks is not None:
            self._blocks.close()
            self._blocks = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Client:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise InterfaceError("client is not started: use `async with connect(...)`")
        return self._session

    def _t(self, timeout: float | None) -> float:
        return self.options.timeout if timeout is None else timeout

    # ---- metadata ---------------------------------------------------------

    async def stat(
        self,
        bucket: str,
        key: str,
        *,
        fresh: bool = False,
        full: bool = False,
        timeout: float | None = None,
    ) -> p.ObjectInfo:
        """Metadata of an object (size, ETag, last-modified, block size).

        ``full``: also its content type and user metadata (metadata cached
        from a listing lacks them, and is then not enough).
        """
        if not fresh:
            cached = self._meta.get(bucket, key)
            if cached is not None and not (full and cached.partial):
                return cached
        generation = self._generation
        try:
            info = await call(
                self.session,
                self.master + p.STAT,
                p.ObjectInfo,
                p.StatRequest(bucket, key, full),
                timeout=self._t(timeout),
            )
        except Unreachable:
            # The master is restarting or gone: what we knew still names the right
            # blocks (ids bind the ETag), and the workers still serve them.
            stale = self._meta.get(bucket, key, stale=self.options.stale_if_error)
            if stale is None or fresh or (full and stale.partial):
                raise
            log.warning("master unreachable: using cached metadata of %s/%s", bucket, key)
            return stale
        if generation == self._generation:  # else a write raced with this stat
            self._meta.put(info)
        return info

    async def ls(
        self,
        bucket: str,
        prefix: str = "",
        *,
        delimiter: str = "",
        start_after: str = "",
        token: str | None = None,
        max_keys: int = 1000,
        timeout: float | None = None,
    ) -> p.ListPage:
        """One page of a listing in key order; pass ``page.next_token`` for the next."""
        req = p.ListRequest(bucket, prefix, delimiter, start_after, token, max_keys)
        return await call(self.session, self.master + p.LIST, p.ListPage, req, timeout=self._t(timeout))

    async def walk(
        self, bucket: str, prefix: str = "", *, timeout: float | None = None
    ) -> AsyncIterator[p.ListEntry]:
        """Every object under ``prefix``, across pages."""
        token: str | None = None
        while True:
            page = await self.ls(bucket, prefix, token=token, timeout=timeout)
            for e in page.entries:
                yield e
            if not page.truncated or not page.next_token:
                return
            token = page.next_token

    async def buckets(self, *, timeout: float | None = None) -> list[p.BucketInfo]:
        reply = await call(self.session, self.master + p.BUCKETS, p.BucketsReply, timeout=self._t(timeout))
        return reply.buckets

    async def head_bucket(self, bucket: str, *, timeout: float | None = None) -> None:
        """Raise NoSuchBucket unless ``bucket`` exists."""
        await call(
            self.session,
            self.master + p.HEAD_BUCKET,
            Empty,
            p.BucketRequest(bucket),
            timeout=self._t(timeout),
        )

    async def workers(self, *, timeout: float | None = None) -> list[p.WorkerInfo]:
        """The live workers, as the master sees them."""
        reply = await call(self.session, self.master + p.WORKERS, p.WorkersReply, timeout=self._t(timeout))
        self._set_workers(reply.workers)
        return reply.workers

    async def locate(self, ids: list[str], *, timeout: float | None = None) -> dict[str, list[str]]:
        """Which workers hold each block (absent: held nowhere)."""
        reply = await call(
            self.session,
            self.master + p.LOCATE,
            p.LocateReply,
            p.LocateRequest(ids),
            timeout=self._t(timeout),
        )
        return reply.locations

    # ---- tenant quotas ------------------------------------------------------

    async def set_quotas(
        self,
        quotas: Mapping[str, int],
        unlimited: Sequence[str] = (),
        *,
        timeout: float | None = None,
    ) -> dict[str, int]:
        """Set tenants' cluster-wide cache quotas in bytes (``unlimited`` ones lose theirs).

        Tenants named in neither keep theirs. Returns every quota the master now knows.
        """
        reply = await call(
            self.session,
            self.master + p.QUOTAS,
            p.QuotasReply,
            p.QuotaRequest(dict(quotas), list(unlimited)),
            timeout=self._t(timeout),
        )
        return reply.quotas

    async def quotas(self, *, timeout: float | None = None) -> dict[str, int]:
        """Every tenant's cluster-wide cache quota, in bytes."""
        reply = await call(self.session, self.master + p.QUOTAS, p.QuotasReply, timeout=self._t(timeout))
        return reply.quotas

    # ---- load jobs ----------------------------------------------------------

    async def load(
        self,
        *paths: str | Sequence[str],
        priority: int = 0,
        hold: str = "",
        timeout: float | None = None,
    ) -> Job:
        """Start loading every object under ``paths`` (``s3://bucket/prefix``) into the cache.

        ``paths`` are strings or lists of strings: ``load("s3://a/", "s3://b/")``
        and ``load(["s3://a/", "s3://b/"])`` are the same. The master lists the
        paths and has the owning workers fetch each block; follow it with
        ``job.progress()``, ``await job.wait()`` or ``job.cancel()``. Higher
        ``priority`` jobs are served first. With ``hold``, every block of the
        job joins that hold (a "protect" hold, created if needed) and lands
        pinned: load and protect in one call, undone by ``release(hold)``.
        """
        flat = [x for path in paths for x in ([path] if isinstance(path, str) else path)]
        if not flat:
            raise InterfaceError("load needs at least one path")
        info = await call(
            self.session,
            self.master + p.JOBS,
            p.JobInfo,
            p.LoadRequest(flat, priority, hold),
            timeout=self._t(timeout),
        )
        return Job(self, info)

    async def jobs(self, *, timeout: float | None = None) -> list[p.JobInfo]:
        """Every load job the master knows, oldest first."""
        reply = await call(self.session, self.master + p.JOBS, p.JobsReply, timeout=self._t(timeout))
        return reply.jobs

    def job(self, job_id: str) -> Job:
        """A handle on an existing job (nothing is asked until it is used)."""
        return Job(self, p.JobInfo(job_id, "unknown"))

    def _set_workers(self, workers: list[p.WorkerInfo]) -> None:
        self._workers = {w.worker_id: w for w in workers}
        self._candidates = [Candidate(w.worker_id, w.weight) for w in workers]
        self._workers_at = time.monotonic()

    async def _live_workers(self) -> list[Candidate]:
        """The cached worker list; refreshed in the background once stale, so hot reads never wait."""
        age = time.monotonic() - self._workers_at
        if not self._candidates:
            await self.workers()
            if not self._candidates:
                raise NoWorkers("the master knows no live worker")
        elif age > self.options.workers_ttl and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.create_task(self._refresh_workers())
        return self._candidates

    async def _refresh_workers(self) -> None:
        """Background refresh; a master that is down or just restarted leaves the list as it was."""
        try:
            reply = await call(self.session, self.master + p.WORKERS, p.WorkersReply, timeout=self._t(None))
        except CacheError as exc:
            log.warning("worker list refresh failed: %s", exc)
            return
        if reply.workers or not self._candidates:
            self._set_workers(reply.workers)
        else:
            # A restarted master knows no worker until they re-register (a beat or two):
            # the workers we know still serve, and a dead one is skipped at read time.
            self._workers_at = time.monotonic()

    # ---- writes -----------------------------------------------------------
    #
    # Writes go straight to the under-store from this process (the master stays
    # off the data path), then the master and this client forget the key's
    # metadata. Blocks of the old version are never served again: their ids
    # include the old ETag, and they age out of the workers' tiers.

    async def understore(self, *, timeout: float | None = None) -> UnderStore:
        """The under-store writes go to (opened on first use, closed with the client)."""
        if self._ufs is None:
            async with self._ufs_lock:
                if self._ufs is None:
                    uri = self.options.ufs
                    if uri is None:
                        uri = (await self.config(timeout=timeout)).ufs
                    self._ufs = open_understore(uri, self.options.ufs_timeouts)
        return self._ufs

    async def config(self, *, timeout: float | None = None) -> p.ConfigReply:
        """The master's configuration (under-store, block size, consistency mode); asked once."""
        if self._config is None:
            self._config = await call(
                self.session, self.master + p.CONFIG, p.ConfigReply, timeout=self._t(timeout)
            )
        return self._config

    def set_metadata_ttl(self, seconds: float) -> None:
        """Reuse object metadata for ``seconds`` from now on (0: ask the master on every stat)."""
        self._meta.retune(seconds)

    def cap_metadata_ttl(self, seconds: float) -> None:
        """Reuse metadata for at most ``seconds`` from now on, what is cached included.

        Unlike ``set_metadata_ttl`` the entries stay, for ``stale_if_error`` use while
        the master cannot be reached.
        """
        self._meta.cap(seconds)

    def forget(self, bucket: str, key: str = "", prefix: str = "") -> None:
        """Forget cached metadata of ``key`` (or every key under ``prefix``) here only.

        A stat in flight will not cache what it gets (it may predate the change).
        """
        self._generation += 1
        if key:
            self._meta.drop(bucket, key)
        else:
            self._meta.drop_prefix(bucket, prefix)

    def forget_all(self) -> None:
        """Forget all cached metadata here (stats in flight will not cache their answers)."""
        self._generation += 1
        self._meta.clear()

    async def invalidate(
        self, bucket: str, key: str = "", *, prefix: str = "", timeout: float | None = None
    ) -> int:
        """Forget cached metadata of ``key`` (or of every key under ``prefix``), here and on the master.

        Returns how many entries the master dropped.
        """
        self.forget(bucket, key, prefix)
        reply = await call(
            self.session,
            self.master + p.INVALIDATE,
            p.InvalidateReply,
            p.InvalidateRequest(bucket, key, "" if key else prefix),
            timeout=self._t(timeout),
        )
        return reply.dropped

    @contextlib.asynccontextmanager
    async def _writing(self, bucket: str, key: str) -> AsyncIterator[None]:
        """Invalidate the key after the write inside; after a failed one, best effort
        (it may have landed) and the write's own error is what the caller sees."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(CacheError):
                await self.invalidate(bucket, key)
            raise
        await self.invalidate(bucket, key)

    async def put(
        self,
        bucket: str,
        key: str,
        body: AsyncIterator[bytes] | bytes,
        *,
        size: int | None = None,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> p.ObjectInfo:
        """Write an object through to the under-store; its new info (ETag at least).

        ``body`` may stream (an async iterator of chunks); if it raises, nothing is stored.
        """
        ufs = await self.understore()
        async with self._writing(bucket, key):
            return await ufs.put(bucket, key, body, size, content_type, metadata)

    async def delete(self, bucket: str, key: str) -> None:
        """Delete an object (a missing key is not an error, as in S3)."""
        ufs = await self.understore()
        async with self._writing(bucket, key):
            await ufs.delete(bucket, key)

    async def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> p.ObjectInfo:
        """Server-side copy in the under-store; the new object's info."""
        ufs = await self.understore()
        async with self._writing(dst_bucket, dst_key):
            return await ufs.copy(src_bucket, src_key, dst_bucket, dst_key)

    async def create_bucket(self, bucket: str) -> None:
        """Create a bucket (BucketAlreadyOwnedByYou if it exists)."""
        await (await self.understore()).create_bucket(bucket)

    async def delete_bucket(self, bucket: str) -> None:
        """Delete an empty bucket (BucketNotEmpty otherwise); its cached metadata goes too."""
        await (await self.understore()).delete_bucket(bucket)
        await self.invalidate(bucket, prefix="")

    async def create_upload(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """Start a multipart upload in the under-store; its id."""
        return await (await self.understore()).create_upload(bucket, key, content_type, metadata)

    async def put_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: AsyncIterator[bytes] | bytes,
        *,
        size: int | None = None,
    ) -> str:
        """Upload one part; its ETag. Nothing is visible until :meth:`complete_upload`."""
        ufs = await self.understore()
        return await ufs.put_part(bucket, key, upload_id, part_number, body, size)

    async def complete_upload(
        self, bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> p.ObjectInfo:
        """Assemble the object from (part number, ETag) pairs; the key's metadata is invalidated."""
        ufs = await self.understore()
        async with self._writing(bucket, key):
            return await ufs.complete_upload(bucket, key, upload_id, parts)

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """Drop a multipart upload and its parts."""
        await (await self.understore()).abort_upload(bucket, key, upload_id)

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, *, marker: int = 0, max_parts: int = 1000
    ) -> PartsPage:
        """Parts of a multipart upload numbered above ``marker`` (straight from the under-store)."""
        return await (await self.understore()).list_parts(bucket, key, upload_id, marker, max_parts)

    async def list_uploads(
        self,
        bucket: str,
        prefix: str = "",
        *,
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
    ) -> UploadsPage:
        """Multipart uploads in progress (straight from the under-store)."""
        ufs = await self.understore()
        return await ufs.list_uploads(bucket, prefix, delimiter, key_marker, upload_id_marker, max_uploads)

    async def list_versions(
        self,
        bucket: str,
        prefix: str = "",
        *,
        delimiter: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        max_keys: int = 1000,
    ) -> VersionsPage:
        """Object versions (straight from the under-store; not cached)."""
        ufs = await self.understore()
        return await ufs.list_versions(bucket, prefix, delimiter, key_marker, version_id_marker, max_keys)

    # ---- data -------------------------------------------------------------

    async def _fetch_span(
        self, info: p.ObjectInfo, span: BlockSpan, timeout: float | None, tenant: str = ""
    ) -> Chunks:
        """Bytes of one block span from its owner, falling back along the placement ranking.

        The bytes come as the chunks the socket delivered them in: joining them
        would copy every byte once more, and the gateway writes them out as they are.
        """
        bid = info.block_id(span.index)
        ref = p.BlockRef(info.bucket, info.key, info.etag, span.index, info.size, info.block_size, tenant)
        local = self.local.worker_id if self.local is not None else None
        last: Exception | None = None
        for wid in rank(bid, await self._live_workers()):
            try:
                if wid == local and self.local is not None:
                    data = await self.local.read_span(ref, span.start, span.end)
                else:
                    worker = self._workers.get(wid)
                    if worker is None:
                        continue
                    data = await self._get_block(worker.address, bid, ref, span, timeout)
            except (
                aiohttp.ClientConnectionError,
                aiohttp.ClientPayloadError,
                FetchError,
                TimeoutError,
            ) as exc:
                # The worker is gone, stuck, or died mid-body: the next-ranked one
                # fetches from the under-store.
                last = exc
                self._workers_at = 0.0
                continue
            except (NoWorkers, ChecksumMismatch) as exc:
                # Not ready yet (registering), or its copy is bad: another worker can answer.
                last = exc
                continue
            except CacheError as exc:
                if type(exc) is not CacheError:
                    raise  # a typed answer about the object itself (missing, changed, slow down)
                last = exc  # an internal error of that worker
                continue
            got = sum(map(len, data))
            if got != span.length:
                last = CacheError(f"short block from {wid}: {got} of {span.length} bytes")
                continue
            return data
        raise NoWorkers(f"no worker could serve block {span.index} of {info.bucket}/{info.key}: {last}")

    async def _get_block(
        self, address: str, bid: str, ref: p.BlockRef, span: BlockSpan, timeout: float | None
    ) -> Chunks:
        headers = {} if span.whole else {"Range": f"bytes={span.start}-{span.end - 1}"}
        if self._blocks is not None:
            try:
                body = await self._blocks.get(
                    address,
                    f"{p.BLOCKS}/{bid}",
                    ref.to_query(),
                    headers,
                    span.length,
                    total=self._t(timeout),
                    stall=self.options.stall_timeout,
                )
                return [body]
            except Unsupported as exc:
                log.debug("block %s through aiohttp: %s", bid, exc)
        stall = self.options.stall_timeout
        to = aiohttp.ClientTimeout(total=self._t(timeout), sock_connect=stall, sock_read=stall)
        url = f"{address}{p.BLOCKS}/{bid}"
        async with self.session.get(url, params=ref.to_query(), headers=headers, timeout=to) as resp:
            await raise_for_error(resp)
            return [chunk async for chunk, _ in resp.content.iter_chunks()]

    async def get(
        self,
        bucket: str,
        key: str,
        range: Range | None = None,
        *,
        timeout: float | None = None,
        tenant: str = "",
    ) -> bytes:
        """The object's bytes (or a range of them), read through the cache.

        ``tenant``: blocks this read brings into the cache are charged to that
        tenant's cache quota ("" charges nobody).
        """
        for attempt in (0, 1):
            info = await self.stat(bucket, key, fresh=attempt > 0, timeout=timeout)
            try:
                parts = [c async for span in self._iter_spans(info, range, timeout, tenant) for c in span]
                return b"".join(parts)
            except ObjectChanged:
                # Our metadata was stale: the object was replaced. Read the new version once.
                self._meta.drop(bucket, key)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def open(
        self,
        bucket: str,
        key: str,
        range: Range | None = None,
        *,
        timeout: float | None = None,
        info: p.ObjectInfo | None = None,
        tenant: str = "",
    ) -> ObjectReader:
        """Stream an object block by block: ``async with pc.open(b, k) as r: async for chunk in r``.

        ``tenant`` as for :meth:`get`.
        """
        return ObjectReader(self, bucket, key, range, timeout, info, tenant)

    async def _iter_spans(
        self, info: p.ObjectInfo, range: Range | None, timeout: float | None, tenant: str = ""
    ) -> AsyncIterator[Chunks]:
        """Yield the spans of ``range`` in order, each as its chunks; ``read_ahead`` fetches in flight."""
        start, end = (range.start, range.end) if range else (0, None)
        if start < 0 or (end is not None and end < start):
            raise InterfaceError(f"bad range {start}-{end}")
        if start > 0 and start >= info.size:
            raise InvalidRange(f"range start {start} is past the object's size {info.size}")
        todo: Iterator[BlockSpan] = iter(spans(info.size, info.block_size, start, end))
        first = next(todo, None)
        if first is None:
            return
        second = next(todo, None)
        if second is None:
            # One block (every small object): nothing to read ahead, so no task to pay for.
            yield await self._fetch_span(info, first, timeout, tenant)
            return
        todo = itertools.chain((first, second), todo)
        pending: list[asyncio.Task[Chunks]] = []
        depth = max(1, self.options.read_ahead)
        try:
            while True:
                while len(pending) < depth:
                    span = next(todo, None)
                    if span is None:
                        break
                    pending.append(asyncio.create_task(self._fetch_span(info, span, timeout, tenant)))
                if not pending:
                    return
                yield await pending.pop(0)
        finally:
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)


class ObjectReader:
    """An async iterator over an object's bytes, block by block, with bounded read-ahead."""

    def __init__(
        self,
        client: Client,
        bucket: str,
        key: str,
        range: Range | None,
        timeout: float | None,
        info: p.ObjectInfo | None,
        tenant: str = "",
    ) -> None:
        self._client, self.bucket, self.key = client, bucket, key
        self._range, self._timeout = range, timeout
        self.info = info
        self._tenant = tenant
        self._it: AsyncIterator[Chunks] | None = None

    async def __aenter__(self) -> ObjectReader:
        if self.info is None:
            self.info = await self._client.stat(self.bucket, self.key, timeout=self._timeout)
        self._it = self._client._iter_spans(self.info, self._range, self._timeout, self._tenant)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._it is not None:
            await self._it.aclose()  # type: ignore[attr-defined]
            self._it = None

    def __aiter__(self) -> ObjectReader:
        return self

    async def __anext__(self) -> bytes:
        # One chunk joins without a copy; several are joined once, into the block.
        return b"".join(await self.next_span())

    async def next_span(self) -> Chunks:
        """The next block span as the chunks it arrived in (no copy); StopAsyncIteration at the end."""
        if self._it is None:
            raise InterfaceError("use the reader inside `async with`")
        return await self._it.__anext__()

    async def read(self) -> bytes:
        """The rest of the stream in one buffer (for small objects)."""
        return b"".join([c async for c in self])


def connect(master: str, options: ClientOptions | None = None, **kw: object) -> Client:
    """A client for the cluster whose master is at ``master``; use ``async with``.

    Keyword arguments override fields of :class:`ClientOptions`.
    """
    if kw:
        base = options or ClientOptions()
        options = dataclasses.replace(base, **kw)  # type: ignore[arg-type]
    return Client(master, options)

"""The worker's side of its conversation with the master.

Theory of operation
-------------------
1. **Register** with a full block report (every resident block), its
   capacity and usage. The master may start after the worker or restart at any
   time, so registration is retried with capped, jittered exponential backoff
   until it is answered. The reply names the under-store (which the worker
   then opens: misses wait for it) and the heartbeat interval.
2. **Beat** every interval with the block changes since the last
   *acknowledged* beat, and the tier usage. Changes drained from the store go
   into a ``DeltaBuffer`` first and leave it only when the master has answered
   200, so a beat lost to a dead master or a 500 is resent, merged with newer
   changes, next time: a delta is never lost. The buffer keeps each block's
   *last* change rather than cancelling an add against a remove: resending
   "removed X" is harmless if the master never heard of X, while cancelling
   it would leave X on the master if an earlier beat had in fact arrived
   (its reply lost).
3. The master answers **UnknownWorker** when it has dropped this worker
   (restart, timeout): go back to 1. A full report supersedes any buffered
   deltas. The store is drained *before* the report is listed, so a change in
   between is reported twice (harmless) rather than not at all.
4. **Commands** in beat replies are executed: ``free`` removes blocks (the
   removals reach the master in the next beat); ``load`` fetches blocks in
   the background, at most ``load_concurrency`` at once, through the same
   single-flight miss path as reads (a resident block is skipped). Loaded
   blocks reach the master as ordinary ``added`` deltas, which is what
   completes a load job; failures go back in ``load_failed`` (kept until a
   beat carrying them is acknowledged) so the master can retry or give up.
   ``quota`` replaces this worker's share of each tenant's cache quota.
   ``pin``, ``unpin`` and ``release`` go to the store as they are. Pins live
   in memory only and are dropped at each registration: the master sends
   again those it still wants, for the blocks of the full report, so a
   master that restarted without its holds leaves no stale pin behind.
   A pin naming a hold (``tag``) also tags its blocks, so their reads are
   counted per hold (``tiering.readtags``) and sent back in every beat
   (``tag_reads``); ``untag`` forgets a hold that ended, and tags are
   dropped at each registration with the pins. Unknown kinds are logged and
   skipped, so an older worker survives a newer master.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TypeVar

import aiohttp

from ..client.backoff import backoff
from ..client.protocol import (
    HEARTBEAT,
    MAX_TAGS,
    MSGPACK,
    REGISTER,
    Command,
    ErrorBody,
    HeartbeatReply,
    HeartbeatRequest,
    LoadFailure,
    LoadTask,
    Message,
    RegisterReply,
    RegisterRequest,
)
from ..client.ufs import UnderStoreTimeouts, open_understore
from ..tiering.blocks import is_block_id
from ..tiering.errors import BadRequest, CacheError, UnknownWorker
from .blocks import BlockService

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

MIN_INTERVAL = 0.05
"""Floor on the master's heartbeat interval (a zero would spin)."""
EARLY_BEAT = 0.1
"""Early beats (load progress) come at most this share of the interval apart."""
_PIN_COMMANDS = frozenset({"pin", "unpin", "release"})
"""Commands carried out by the ``TieredStore`` method of the same name."""


class MasterUnreachable(Exception):
    """The master did not answer (refused, reset, timed out): nothing is known to have arrived."""


class DeltaBuffer:
    """Block changes not yet acknowledged by the master; the last change per block wins."""

    def __init__(self) -> None:
        self._present: dict[str, bool] = {}

    def __len__(self) -> int:
        return len(self._present)

    def merge(self, added: list[str], removed: list[str]) -> None:
        """Fold in one drain of the store (whose two lists never share a block)."""
        for b in removed:
            self._present[b] = False
        for b in added:
            self._present[b] = True

    def pending(self) -> tuple[list[str], list[str]]:
        """(added, removed) to send, each sorted."""
        added = sorted(b for b, present in self._present.items() if present)
        removed = sorted(b for b, present in self._present.items() if not present)
        return added, removed

    def clear(self) -> None:
        """The master acknowledged everything pending (or a full report replaced it)."""
        self._present.clear()


async def post(
    session: aiohttp.ClientSession, url: str, msg: Message, reply_cls: type[M], *, seconds: float
) -> M:
    """POST a msgpack message; the reply as ``reply_cls`` or the typed error the master sent.

    MasterUnreachable when no answer came; CacheError subclasses for error
    answers (an answer without an ErrorBody becomes a plain CacheError).
    """
    try:
        async with session.post(
            url,
            data=msg.pack(),
            headers={"Content-Type": MSGPACK},
            timeout=aiohttp.ClientTimeout(total=seconds),
        ) as resp:
            body = await resp.read()
            status, ctype = resp.status, resp.content_type
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise MasterUnreachable(f"{url}: {exc!r}") from exc
    if status >= 300:
        if ctype == MSGPACK:
            try:
                err = ErrorBody.unpack(body).to_error()
            except BadRequest:
                pass
            else:
                raise err
        raise CacheError(f"master answered HTTP {status} to {url}: {body[:200]!r}")
    try:
        reply: M = reply_cls.unpack(body)
    except BadRequest as exc:
        raise CacheError(f"malformed reply from {url}: {exc.message}") from None
    return reply


class Heartbeat:
    """Registers the worker, beats, and runs the master's commands. ``run()`` never returns."""

    def __init__(
        self,
        service: BlockService,
        session: aiohttp.ClientSession,
        *,
        master: str,
        worker_id: str,
        address: str,
        timeout: float,
        retry_max: float,
        ufs_timeouts: UnderStoreTimeouts | None = None,
        load_concurrency: int = 8,
    ) -> None:
        self._svc = service
        self._session = session
        self._master = master.rstrip("/")
        self.worker_id = worker_id
        self._address = address
        self._timeout = timeout
        self._retry_max = retry_max
        self._ufs_timeouts = ufs_timeouts
        self._deltas = DeltaBuffer()
        self._interval = 1.0
        self._ufs_uri: str | None = None
        """The under-store URI currently open."""
        self._wanted_ufs: str | None = None
        """The under-store URI the master named last."""
        self.registrations = 0
        """Successful registrations so far (re-registrations included)."""
        self.registered = asyncio.Event()
        """Set once the first registration succeeded."""
        self.failed_beats = 0
        """Heartbeats failed in a row (their changes are kept and resent)."""
        self._load_limit = asyncio.Semaphore(load_concurrency)
        self._loads: dict[str, asyncio.Task[None]] = {}
        """Block id -> its running load task."""
        self._load_failed: dict[str, str] = {}
        """Block id -> why its load failed, until a beat carrying it is acknowledged."""
        self._soon = asyncio.Event()
        """Set when a beat should not wait for the interval (half the load batch is done)."""
        self._batch = 0
        """Load tasks running after the last beat's commands started."""

    async def close(self) -> None:
        """Cancel the load tasks still running (at shutdown)."""
        tasks = list(self._loads.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def run(self) -> None:
        """Register, beat until the master forgets us, repeat; survive any error."""
        while True:
            try:
                reply = await self._register()
                await self._use_ufs(reply.ufs)
                await self._beat_until_forgotten()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("heartbeat loop failed; registering again in %.1fs", self._retry_max)
                await asyncio.sleep(self._retry_max)

    # ---- registration ----------------------------------------------------------

    def _full_report(self) -> RegisterRequest:
        """Blocking: drain first, then list (see the module docstring, point 3).

        Pins are dropped: the master that answers knows nothing of them (it
        restarted, or forgot us) and sends again the ones it still wants.
        """
        store = self._svc.store
        store.unpin(store.pinned())
        store.drain_changes()
        blocks = store.block_ids()
        return RegisterRequest(
            worker_id=self.worker_id,
            address=self._address,
            capacity=store.capacity(),
            usage=store.usage(),
            blocks=blocks,
        )

    async def _register(self) -> RegisterReply:
        attempt = 0
        while True:
            self._svc.metrics.tags.clear()  # on the loop, which counts reads: tags go with the pins
            request = await self._svc.run(self._full_report)
            self._deltas.clear()
            try:
                reply = await post(
                    self._session, self._master + REGISTER, request, RegisterReply,
                    seconds=self._timeout,
                )
            except (MasterUnreachable, CacheError) as exc:
                delay = backoff(attempt, self._retry_max)
                loud = attempt in (0, 10) or attempt % 100 == 0
                level = logging.WARNING if loud else logging.DEBUG
                log.log(level, "cannot register with %s (attempt %d, retry in %.2fs): %s",
                        self._master, attempt + 1, delay, exc)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            if reply.worker_id != self.worker_id:
                log.warning("master calls us %r; we keep %r", reply.worker_id, self.worker_id)
            self._interval = max(reply.heartbeat_interval, MIN_INTERVAL)
            self.registrations += 1
            self.registered.set()
            log.info("registered with %s as %s (%d blocks, beat every %.2fs)",
                     self._master, self.worker_id, len(request.blocks), self._interval)
            return reply

    async def _use_ufs(self, uri: str) -> None:
        """Open the under-store the master named, unless it is the one already open."""
        self._wanted_ufs = uri
        if uri == self._ufs_uri and self._svc.ufs.current is not None:
            return
        try:
            ufs = open_understore(uri, self._ufs_timeouts)
        except Exception as exc:  # any failure here only blocks misses; retried each beat
            self._svc.ufs.problem = f"the under-store {uri!r} cannot be opened: {exc}"
            log.error("cannot open the under-store %r: %s", uri, exc)
            return
        self._ufs_uri = uri
        old = self._svc.ufs.set(ufs)
        if old is not None:
            log.info("under-store changed to %s", uri)
            await old.close()

    # ---- beats -------------------------------------------------------------------

    def _changes(self) -> tuple[list[str], list[str], dict[str, int], dict[str, int]]:
        store = self._svc.store
        added, removed = store.drain_changes()
        tenants = {t: used for t, (used, _) in store.quotas().items()}
        return added, removed, store.usage(), tenants

    async def _beat_until_forgotten(self) -> None:
        last = 0.0
        while True:
            # Every interval, or sooner once half the load batch is done: the master hands
            # out load tasks and learns of loaded blocks only in beats, so waiting out the
            # interval would leave the under-store link idle between batches.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._soon.wait(), self._interval)
            self._soon.clear()
            loop = asyncio.get_running_loop()
            await asyncio.sleep(max(0.0, last + self._interval * EARLY_BEAT - loop.time()))
            last = loop.time()
            if self._wanted_ufs is not None and self._wanted_ufs != self._ufs_uri:
                await self._use_ufs(self._wanted_ufs)  # opening failed before: retry
            added, removed, usage, tenants = await self._svc.run(self._changes)
            self._deltas.merge(added, removed)
            pending_added, pending_removed = self._deltas.pending()
            failed = dict(self._load_failed)
            request = HeartbeatRequest(
                self.worker_id, pending_added, pending_removed, usage,
                [LoadFailure(b, why) for b, why in failed.items()],
                self._svc.metrics.snapshot(),
                tenants=tenants,
                tag_reads=self._svc.metrics.tags.counts(MAX_TAGS),
            )
            try:
                reply = await post(
                    self._session, self._master + HEARTBEAT, request, HeartbeatReply,
                    seconds=self._timeout,
                )
            except UnknownWorker:
                log.info("the master does not know %s any more: registering again", self.worker_id)
                return
            except (MasterUnreachable, CacheError) as exc:
                # Loud once per outage, quiet while it lasts (a beat per interval).
                level = logging.DEBUG if self.failed_beats else logging.WARNING
                self.failed_beats += 1
                log.log(level, "heartbeat to %s failed, keeping %d changes for the next one: %s",
                        self._master, len(self._deltas), exc)
                continue
            if self.failed_beats:
                log.warning("heartbeat to %s works again after %d failures",
                            self._master, self.failed_beats)
                self.failed_beats = 0
            self._deltas.clear()
            for b in failed:
                if self._load_failed.get(b) == failed[b]:
                    del self._load_failed[b]
            await self._execute(reply.commands)

    async def _execute(self, commands: list[Command]) -> None:
        for cmd in commands:
            try:
                if cmd.kind == "free":
                    ids = [b for b in cmd.blocks if is_block_id(b)]
                    n = await self._svc.run(self._svc.store.remove, ids)
                    log.debug("freed %d of %d blocks on the master's request", n, len(ids))
                elif cmd.kind == "load":
                    for task in cmd.loads:
                        self._start_load(task)
                    self._batch = len(self._loads)
                elif cmd.kind == "quota":
                    self._svc.store.set_quotas(cmd.quotas)
                    log.info("cache quota shares: %s", cmd.quotas)
                elif cmd.kind in _PIN_COMMANDS:
                    store = self._svc.store
                    op = {"pin": store.pin, "unpin": store.unpin, "release": store.release}[cmd.kind]
                    ids = [b for b in cmd.blocks if is_block_id(b)]
                    n = await self._svc.run(op, ids)
                    log.debug("%s: %d of %d blocks changed", cmd.kind, n, len(ids))
                    if cmd.kind == "pin" and cmd.tag:
                        self._svc.metrics.tags.tag(cmd.tag, ids)
                elif cmd.kind == "untag":
                    self._svc.metrics.tags.untag(cmd.tag)
                else:
                    log.warning("ignoring unknown command %r from the master", cmd.kind)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("command %r failed", cmd.kind)

    # ---- load tasks ----------------------------------------------------------------

    def _start_load(self, task: LoadTask) -> None:
        ref = task.ref()
        bid = ref.block_id()
        if bid in self._loads:
            return  # already loading (a retry sent while the first attempt runs)
        self._load_failed.pop(bid, None)  # the master retries it: an old failure is stale
        t = asyncio.create_task(self._load(task, bid), name=f"load:{bid}")
        self._loads[bid] = t
        t.add_done_callback(lambda _: self._load_done(bid))

    def _load_done(self, bid: str) -> None:
        self._loads.pop(bid, None)
        if len(self._loads) <= self._batch // 2:
            self._soon.set()

    async def _load(self, task: LoadTask, bid: str) -> None:
        """Fetch one block into the store, unless it is there already; note a failure."""
        ref = task.ref()
        try:
            async with self._load_limit:
                store = self._svc.store
                if ref.size == 0 or store.tier_of(bid) is not None:
                    return
                await self._svc.fetch(bid, ref)
                if store.tier_of(bid) is None:
                    self._load_failed[bid] = "fetched but not kept (no capacity)"
        except asyncio.CancelledError:
            raise
        except CacheError as exc:
            self._load_failed[bid] = f"{exc.code}: {exc.message}"
        except Exception as exc:
            log.exception("loading block %s failed", bid)
            self._load_failed[bid] = repr(exc)

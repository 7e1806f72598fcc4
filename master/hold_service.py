"""The master's holds service: resolves paths to blocks and routes the registry's commands.

The thin layer between the handlers and the pure ``HoldRegistry``: it awaits
listings (through the master's ``objects_under``), reads the block map, and
queues the resulting worker commands on ``ClusterState`` for the workers'
next heartbeat replies. The clock is the wall clock (seconds since the
epoch), so hold times survive a journal round trip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from ..client.protocol import (
    Command,
    FreeReply,
    FreeRequest,
    HeartbeatRequest,
    HoldInfo,
    HoldRequest,
    ObjectInfo,
    RegisterRequest,
    ReleaseRequest,
    TtlRequest,
    split_path,
)
from ..tiering.blocks import block_count
from ..tiering.errors import BadRequest, UnknownWorker
from ..tiering.placement import Candidate, owner
from .holds import KEEPING, Commands, Hold, HoldRegistry
from .state import ClusterState

log = logging.getLogger(__name__)

ObjectsUnder = Callable[[str, str], Awaitable[list[ObjectInfo]]]
"""(bucket, prefix) -> the object named so, else every object under it."""


def object_blocks(objects: Iterable[ObjectInfo]) -> list[str]:
    """Every block id of ``objects``, in order."""
    return [o.block_id(i) for o in objects for i in range(block_count(o.size, o.block_size))]


@dataclass(eq=False)
class HoldService:
    """Pins, protection, free and TTL on top of the registry (see the module docstring)."""

    state: ClusterState
    objects_under: ObjectsUnder
    registry: HoldRegistry = field(default_factory=HoldRegistry)
    clock: Callable[[], float] = time.time
    changed: Callable[[], None] = lambda: None
    """Called after every change of the holds (the master journals the registry)."""

    # ---- requests -----------------------------------------------------------------

    async def hold(self, req: HoldRequest) -> HoldInfo:
        """Create or extend a hold over every block under ``req.paths``."""
        ids = await self._resolve(req.paths)  # before creating: a bad path creates nothing
        hold = self.registry.create(req.name, req.kind, req.paths, self.clock(), req.ttl)
        self._send(self.registry.add_blocks(hold.name, ids, self.state.locate, self._owners()))
        self.changed()
        return self.info(hold)

    def release(self, req: ReleaseRequest) -> HoldInfo:
        """End a hold; its blocks become ordinary (or first to go, with ``evict_first``)."""
        hold, cmds = self.registry.remove(req.name, self.state.locate, evict_first=req.evict_first)
        self._send(cmds)
        self.changed()
        return self.info(hold, "released")

    async def free(self, req: FreeRequest) -> FreeReply:
        """Tell the holders of every block under ``req.paths`` to drop it."""
        ids = await self._resolve(req.paths)
        cmds, freed, refused = self.registry.frees(ids, self.state.locate, force=req.force)
        self._send(cmds)
        return FreeReply(freed, refused)

    async def ttl(self, req: TtlRequest) -> HoldInfo:
        """Free the blocks under ``req.paths`` ``req.seconds`` from now."""
        ids = await self._resolve(req.paths)
        name = "ttl:" + " ".join(req.paths)
        hold = self.registry.create(name, "ttl", req.paths, self.clock(), req.seconds)
        self.registry.add_blocks(name, ids, self.state.locate)
        self.changed()
        return self.info(hold)

    def infos(self) -> list[HoldInfo]:
        return [self.info(h) for h in self.registry.holds()]

    def info(self, hold: Hold, state: str = "active") -> HoldInfo:
        return hold.info(len(self.state.locate(hold.blocks)), state)

    # ---- load jobs ----------------------------------------------------------------

    def open_for_load(self, name: str, paths: list[str]) -> None:
        """The hold a load job joins: a "protect" hold, created on demand (or an existing one)."""
        existing = self.registry.holds_named(name)
        kind = existing.kind if existing is not None else "protect"
        if kind not in KEEPING:
            raise BadRequest(f"{name!r} names a {kind} entry: a load can only join a pin or protection")
        self.registry.create(name, kind, paths, self.clock())
        self.changed()

    def join(self, name: str, objects: list[ObjectInfo]) -> None:
        """A load job listed ``objects``: every block of them joins its hold."""
        if self.registry.holds_named(name) is None:
            return  # released while the job was listing
        self._send(self.registry.add_blocks(name, object_blocks(objects), self.state.locate))
        self.changed()

    # ---- worker events --------------------------------------------------------------

    def on_heartbeat(self, req: HeartbeatRequest, loading: list[str]) -> list[Command]:
        """Pins to put in a beat reply: for held blocks the worker just added, and for held
        blocks it is about to load (sent before the load command, so they land pinned)."""
        out: list[Command] = []
        reg = self.registry
        if req.tag_reads:
            reg.count_reads(req.worker_id, req.tag_reads)
        if req.added:
            reg.arrived(req.worker_id, req.added)
            out += reg.pins_for(req.worker_id, req.added)
        if loading:
            out += reg.pins_for(req.worker_id, loading, ahead=True)
        return out

    def on_register(self, req: RegisterRequest) -> None:
        """A worker (re)registered and forgot its pins: queue them for its first beat."""
        self.registry.forget_worker(req.worker_id)
        for cmd in self.registry.pins_for(req.worker_id, req.blocks):
            self.state.queue_command(req.worker_id, cmd)

    def on_workers_gone(self, worker_ids: list[str]) -> None:
        for w in worker_ids:
            self.registry.forget_worker(w)

    def sweep(self) -> None:
        """End the holds whose time is up (unpin, or free for "ttl" entries)."""
        expired = self.registry.expire(self.clock(), self.state.locate)
        for done in expired:
            log.info("%s hold %r expired (%d blocks)", done.hold.kind, done.hold.name, len(done.hold.blocks))
            self._send(done.commands)
        if expired:
            self.changed()

    # ---- internals --------------------------------------------------------------------

    async def _resolve(self, paths: list[str]) -> list[str]:
        objects: list[ObjectInfo] = []
        for path in paths:
            objects.extend(await self.objects_under(*split_path(path)))
        return object_blocks(objects)

    def _owners(self) -> Callable[[str], str | None]:
        """Block id -> its owner among the workers live now (as clients place blocks)."""
        cands = [Candidate(w.worker_id, w.weight) for w in self.state.workers()]
        return lambda block_id: owner(block_id, cands)

    def _send(self, cmds: Commands) -> None:
        for worker_id, commands in cmds.items():
            for cmd in commands:
                try:
                    self.state.queue_command(worker_id, cmd)
                except UnknownWorker:
                    pass  # gone meanwhile: it re-registers without pins, and gets them then

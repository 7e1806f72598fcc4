"""Holds: named sets of blocks the cluster keeps (pins, protection) or drops later (TTL).

Pure state, sans-I/O like ``jobs.py``: no asyncio, no under-store, and the
clock is passed in (seconds since the epoch, so a snapshot stays meaningful
across a master restart). The master resolves paths to block ids and hands
them in; this module says which commands each worker needs.

Theory of operation
-------------------
* A **hold** has a name, a kind, the paths it was made from and the block ids
  they resolved to. "pin" and "protect" holds *keep* their blocks: each block
  counts how many such holds name it, and is pinned on a worker while the
  count is above zero. A "ttl" entry keeps nothing: at expiry its blocks are
  freed (except those a keeping hold names then).
* Workers forget pins when they restart, and pins must reach a block's holder
  however it got there, so pins are sent (idempotently) whenever a held block
  shows up: in a heartbeat's ``added``, in a registration's full report, when a
  hold gains blocks that are already resident, and just before a load task
  for a held block (so the block is pinned from its first byte).
* When a block's count drops to zero (release, unpin, expiry), "release" or
  "unpin" goes to the workers that hold it *and* to those that were sent a pin
  ahead of the block's arrival (``note_ahead``), so no worker keeps a stale pin.
* ``free`` refuses blocks a keeping hold names, unless forced.
* Every pin names the keeping hold it is for (a *tag*, ``tiering.readtags``), so
  workers count per hold the reads of its blocks they serve: a hold joining
  blocks another hold keeps still pins them, under its own name. Workers report
  cumulative [reads, hits] per tag; the hold keeps the latest figures per worker,
  and folds them into its totals when the worker goes (it restarts its counts on
  registering). When the hold ends, the workers sent its tag are told "untag".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..client.protocol import Command, HoldInfo
from ..tiering.errors import BadRequest, NoSuchHold

Locate = Callable[[Iterable[str]], dict[str, list[str]]]
"""Block ids -> workers holding them (``ClusterState.locate``)."""

Owner = Callable[[str], str | None]
"""Block id -> the live worker placement puts it on (None without workers)."""
Commands = dict[str, list[Command]]
"""Worker id -> commands for its next heartbeat reply."""

KEEPING = ("pin", "protect")
"""Kinds whose blocks are pinned; "ttl" entries only schedule a free."""


@dataclass(slots=True, eq=False)
class Hold:
    name: str
    kind: str
    paths: list[str]
    created: float
    expires: float | None = None
    blocks: dict[str, None] = field(default_factory=dict)
    """Block ids in the order they joined (a dict: ordered and deduplicated)."""
    reads: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Worker id -> (reads, hits) of the hold's blocks it served, as it last reported them."""
    gone_reads: tuple[int, int] = (0, 0)
    """(reads, hits) reported by workers since gone."""
    tagged_on: set[str] = field(default_factory=set)
    """Workers sent a pin tagged with this hold (told "untag" when it ends)."""

    def read_counts(self) -> tuple[int, int]:
        """(reads, hits) of the hold's blocks over every worker."""
        reads, hits = self.gone_reads
        for r, h in self.reads.values():
            reads, hits = reads + r, hits + h
        return reads, hits

    def info(self, resident: int, state: str = "active") -> HoldInfo:
        reads, hits = self.read_counts()
        return HoldInfo(
            self.name, self.kind, list(self.paths), self.created, self.expires,
            len(self.blocks), resident, state, reads, hits,
        )


@dataclass(frozen=True, slots=True)
class Expired:
    """A hold that lapsed, and what the workers must do about it."""

    hold: Hold
    commands: Commands


class HoldRegistry:
    """Every hold and the per-block keep counts (see the module docstring)."""

    def __init__(self) -> None:
        self._holds: dict[str, Hold] = {}
        self._refs: dict[str, int] = {}
        """Block id -> how many keeping holds name it (absent: none)."""
        self._ahead: dict[str, set[str]] = {}
        """Block id -> workers sent a pin before they reported the block."""

    # ---- holds --------------------------------------------------------------------

    def get(self, name: str) -> Hold:
        hold = self._holds.get(name)
        if hold is None:
            raise NoSuchHold(f"no hold named {name!r}")
        return hold

    def holds_named(self, name: str) -> Hold | None:
        return self._holds.get(name)

    def holds(self) -> list[Hold]:
        """Every hold, oldest first."""
        return sorted(self._holds.values(), key=lambda h: (h.created, h.name))

    def create(
        self, name: str, kind: str, paths: Iterable[str], now: float, ttl: float | None = None
    ) -> Hold:
        """A new hold, or the existing one of that name with ``paths`` added.

        ``ttl`` (seconds from ``now``) replaces an existing expiry; None keeps
        it. BadRequest when the name is taken by a hold of another kind.
        """
        hold = self._holds.get(name)
        if hold is None:
            hold = Hold(name, kind, [], now)
            self._holds[name] = hold
        elif hold.kind != kind:
            raise BadRequest(f"hold {name!r} is a {hold.kind} hold, not {kind}")
        for p in paths:
            if p not in hold.paths:
                hold.paths.append(p)
        if ttl is not None:
            hold.expires = now + ttl
        return hold

    def add_blocks(
        self, name: str, ids: Iterable[str], locate: Locate, owner: Owner | None = None
    ) -> Commands:
        """Add blocks to a hold; pin commands, tagged with its name, for its new blocks.

        Resident blocks are pinned where they are; the others, with ``owner``,
        on the worker placement would put them on (ahead of their arrival).
        Blocks another hold keeps are pinned again: the tag is new.
        """
        hold = self.get(name)
        new = [b for b in dict.fromkeys(ids) if b not in hold.blocks]
        hold.blocks.update(dict.fromkeys(new))
        if hold.kind not in KEEPING:
            return {}
        for b in new:
            self._ref(b, +1)
        where = locate(new)
        if owner is not None:
            for b in new:
                w = None if b in where else owner(b)
                if w is not None:
                    where[b] = [w]
                    self._ahead.setdefault(b, set()).add(w)
        return self._tagged(hold, where)

    def remove(self, name: str, locate: Locate, *, evict_first: bool) -> tuple[Hold, Commands]:
        """End a hold; "release" (``evict_first``) or "unpin" for the blocks no longer kept."""
        hold = self.get(name)
        del self._holds[name]
        if hold.kind not in KEEPING:
            return hold, {}
        return hold, self._unkeep(hold, locate, "release" if evict_first else "unpin")

    def expire(self, now: float, locate: Locate) -> list[Expired]:
        """End the holds whose time is up: keeping ones unpin, "ttl" entries free their blocks."""
        out: list[Expired] = []
        for hold in [h for h in self._holds.values() if h.expires is not None and h.expires <= now]:
            del self._holds[hold.name]
            if hold.kind in KEEPING:
                cmds = self._unkeep(hold, locate, "unpin")
            else:
                cmds = _by_worker("free", locate(b for b in hold.blocks if b not in self._refs))
            out.append(Expired(hold, cmds))
        return out

    # ---- blocks -------------------------------------------------------------------

    def is_kept(self, block_id: str) -> bool:
        return block_id in self._refs

    def kept(self, ids: Iterable[str]) -> list[str]:
        """Those of ``ids`` a keeping hold names."""
        return [b for b in ids if b in self._refs]

    def pins_for(self, worker_id: str, ids: Iterable[str], *, ahead: bool = False) -> list[Command]:
        """"pin"s for the kept blocks among ``ids`` on one worker: one per keeping hold, tagged.

        ``ahead``: the worker does not hold them yet (a load is about to land
        them), so it is remembered as a target of their eventual unpin.
        """
        kept = self.kept(ids)
        if not kept:
            return []
        if ahead:
            for b in kept:
                self._ahead.setdefault(b, set()).add(worker_id)
        out: list[Command] = []
        kept_set = set(kept)
        for hold in self._holds.values():
            if hold.kind in KEEPING:
                # Walk the smaller side: a big report against small holds, or the reverse.
                if len(hold.blocks) < len(kept):
                    mine = [b for b in hold.blocks if b in kept_set]
                else:
                    mine = [b for b in kept if b in hold.blocks]
                if mine:
                    out.extend(self._tagged(hold, {b: [worker_id] for b in mine})[worker_id])
        return out

    def count_reads(self, worker_id: str, tag_reads: dict[str, list[int]]) -> None:
        """A worker's cumulative [reads, hits] per tag: the latest figures of its holds."""
        for tag, (reads, hits) in tag_reads.items():
            hold = self._holds.get(tag)
            if hold is not None:  # else: a hold that ended (its "untag" is on its way)
                hold.reads[worker_id] = (reads, hits)

    def arrived(self, worker_id: str, ids: Iterable[str]) -> None:
        """The worker reported these blocks: the block map now says where they are."""
        if not self._ahead:
            return
        for b in ids:
            targets = self._ahead.get(b)
            if targets is not None:
                targets.discard(worker_id)
                if not targets:
                    del self._ahead[b]

    def forget_worker(self, worker_id: str) -> None:
        """The worker is gone (expired or re-registered): its pins and tags went with it."""
        for b in [b for b, ws in self._ahead.items() if worker_id in ws]:
            self.arrived(worker_id, [b])
        for hold in self._holds.values():
            hold.tagged_on.discard(worker_id)
            r, h = hold.reads.pop(worker_id, (0, 0))
            hold.gone_reads = (hold.gone_reads[0] + r, hold.gone_reads[1] + h)

    def frees(self, ids: Iterable[str], locate: Locate, *, force: bool) -> tuple[Commands, int, int]:
        """"free" commands for the resident blocks among ``ids``; (commands, freed, refused).

        Blocks a keeping hold names are refused unless ``force`` (the hold
        stays: such a block is pinned again if it comes back).
        """
        where = locate(ids)
        refused = 0 if force else sum(1 for b in where if b in self._refs)
        if not force:
            where = {b: ws for b, ws in where.items() if b not in self._refs}
        return _by_worker("free", where), len(where), refused

    # ---- persistence --------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every hold as plain data (msgpack/JSON-able), for a journal."""
        return {
            "holds": [
                {
                    "name": h.name,
                    "kind": h.kind,
                    "paths": list(h.paths),
                    "created": h.created,
                    "expires": h.expires,
                    "blocks": list(h.blocks),
                    "reads": list(h.read_counts()),
                }
                for h in self.holds()
            ]
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Replace everything with a ``snapshot()`` (workers get their pins as they report)."""
        self._holds.clear()
        self._refs.clear()
        self._ahead.clear()
        for h in data.get("holds", []):
            hold = Hold(h["name"], h["kind"], list(h["paths"]), float(h["created"]), h.get("expires"))
            hold.blocks = dict.fromkeys(h["blocks"])
            reads, hits = h.get("reads", (0, 0))  # workers restart their counts on registering
            hold.gone_reads = (int(reads), int(hits))
            self._holds[hold.name] = hold
            if hold.kind in KEEPING:
                for b in hold.blocks:
                    self._ref(b, +1)

    # ---- internals ----------------------------------------------------------------

    def _ref(self, block_id: str, delta: int) -> int:
        n = self._refs.get(block_id, 0) + delta
        if n > 0:
            self._refs[block_id] = n
        else:
            self._refs.pop(block_id, None)
        return n

    def _unkeep(self, hold: Hold, locate: Locate, kind: str) -> Commands:
        gone = [b for b in hold.blocks if self._ref(b, -1) == 0]
        where = locate(gone)
        for b in gone:
            for w in self._ahead.pop(b, ()):
                if w not in where.setdefault(b, []):
                    where[b].append(w)
        cmds = _by_worker(kind, where)
        for w in sorted(hold.tagged_on):
            cmds.setdefault(w, []).append(Command("untag", tag=hold.name))
        return cmds

    def _tagged(self, hold: Hold, where: dict[str, list[str]]) -> Commands:
        """"pin" commands tagged with ``hold``'s name; notes the workers that got the tag."""
        cmds = _by_worker("pin", where, tag=hold.name)
        hold.tagged_on.update(cmds)
        return cmds


def _by_worker(kind: str, where: dict[str, list[str]], tag: str = "") -> Commands:
    """One ``kind`` command per worker, naming the blocks it holds."""
    ids: dict[str, list[str]] = {}
    for b, workers in where.items():
        for w in workers:
            ids.setdefault(w, []).append(b)
    return {w: [Command(kind, blocks, tag=tag)] for w, blocks in ids.items()}

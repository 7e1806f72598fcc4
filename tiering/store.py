"""The tiered block store the worker embeds: memory first, then SSD.

Theory of operation
-------------------
New blocks land in memory. When memory is over budget, its policy's victims
are *demoted* to SSD; when the SSD is over budget, its victims are *evicted*
(they leave this node). Without an SSD, memory victims are evicted. A block
larger than the memory budget goes straight to SSD.

Promotion keeps the SSD copy. The copy is already paid for, and a promoted
block is likely to fall out of memory again later: with the copy kept, that
demotion is free (no write). Copies are redundant, though, so when the SSD
needs room they are dropped *before* any block that lives only on SSD
(oldest promotion first); dropping a copy loses nothing. A block held in both
tiers counts once in ``block_ids`` and is reported by ``tier_of`` as memory.

Pins (see ``pins.py``). Both tiers rank through a ``PinAwarePolicy``: a
pinned block never leaves the node; memory offers it last, and only when an
SSD can take it, so it is demoted, never evicted (one that cannot move stays).
Released blocks are offered first, and a released memory victim is evicted
rather than demoted. A put that would need a pinned block to leave raises
NoCapacity before anything changes (the worker then serves the bytes
uncached); promotions never move pinned blocks.

Quotas (see ``quotas.py``). A put names the group it is charged to. A group
about to go over its limit first loses its own blocks (in policy order, never
pinned ones), dropped from both tiers; if that cannot make room the put
raises NoCapacity before anything changes. (A put refused afterwards for
pinned memory keeps those evictions: the group was at its limit anyway.)
The ledger is keyed by block id, so a block keeps its group across tiers;
blocks found by the startup scan are uncharged.

Locking. Two locks, taken in this order:

* ``_writer`` serialises everything that writes or unlinks block files (put,
  promote, remove, corrupt drops). Only its holder grows a tier, so a plan
  made under it stays valid while its files are written.
* ``_lock`` guards the metadata and is never held across file I/O, so a
  memory hit on the event loop never waits for a disk write.

A put that must demote works in three steps: plan under ``_lock`` (pick the
victims, drop SSD index entries to make room), do the file I/O with only
``_writer`` held, then commit under ``_lock`` (victims leave memory, their SSD
entries appear, the new block goes in). Until the commit a victim stays in
memory and readable, and since the new block enters only after its victims
left, neither tier's ``usage`` ever exceeds its budget.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from .blocks import BlockId, is_block_id
from .errors import ChecksumMismatch, InterfaceError, NoCapacity
from .eviction import EVICTION_POLICY, make_policy
from .memory import MemoryTier
from .pins import PinAwarePolicy, PinSet
from .quotas import UNCHARGED, QuotaLedger
from .ssd import SsdHandle, SsdTier, file_size, open_block, read_block, unlink_quietly
from .writefaults import WriteFaults

log = logging.getLogger(__name__)

Tier = Literal["memory", "ssd"]

COUNTERS = (
    "puts",  # blocks added to the node
    "memory_hits",
    "ssd_hits",
    "promotions",  # SSD -> memory
    "demotions",  # memory -> SSD (including free ones, when a copy existed)
    "evictions",  # blocks that left the node for lack of room
    "ssd_copy_drops",  # redundant SSD copies dropped to make room
    "ssd_write_errors",  # SSD writes that failed on I/O (the block was evicted or served uncached)
    "missing_dropped",  # indexed SSD files found gone
    "removed",  # blocks removed on request
    "refused_pinned",  # puts not admitted: everything evictable was pinned
    "quota_evictions",  # blocks dropped to keep their group within its quota
    "refused_quota",  # puts not admitted: the group's quota cannot make room
)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Settings of a ``TieredStore``, validated on creation."""

    memory_bytes: int
    """Memory tier budget, in payload bytes."""
    ssd_dir: str | None = None
    """Folder of the SSD tier; None for a memory-only store."""
    ssd_bytes: int = 0
    """SSD tier budget, in file bytes (headers included); > 0 when ``ssd_dir`` is set."""
    policy: str = "lru"
    """Eviction policy of both tiers: a name in ``EVICTION_POLICY`` ("lru" or "lrfu")."""
    promote_on_hit: bool = True
    """``read()`` copies an SSD block into memory. ``open_ssd()`` never promotes
    (it serves zero-copy); the worker calls ``promote()`` afterwards if it wants."""
    fsync: bool = False
    """fsync block files; off by default because the under-store holds the truth."""

    def __post_init__(self) -> None:
        if self.memory_bytes < 0 or self.ssd_bytes < 0:
            raise ValueError("memory_bytes and ssd_bytes must be >= 0")
        if self.ssd_dir is not None and self.ssd_bytes <= 0:
            raise ValueError("ssd_bytes must be > 0 when ssd_dir is set")
        if self.policy not in EVICTION_POLICY:
            raise ValueError(f"unknown policy {self.policy!r} (known: {sorted(EVICTION_POLICY)})")


@dataclass(slots=True)
class _Plan:
    """Room-making decisions, taken under the lock and applied outside it."""

    demote: list[tuple[BlockId, bytes]] = field(default_factory=list)
    """Memory victims to write to SSD."""
    drop: list[BlockId] = field(default_factory=list)
    """Memory victims with an SSD copy: leaving memory costs nothing."""
    evict: list[BlockId] = field(default_factory=list)
    """Memory victims that leave the node."""
    unlink: list[str] = field(default_factory=list)
    """Files of SSD victims, already out of the index."""
    release: BlockId | None = None
    """A promoted block's own SSD copy, dropped at commit to make room."""
    late_unlink: list[str] = field(default_factory=list)
    """Files to unlink after the commit."""
    written: list[BlockId] = field(default_factory=list)
    failed: list[BlockId] = field(default_factory=list)
    stay: list[BlockId] = field(default_factory=list)
    """Pinned memory victims that cannot move to SSD: they stay in memory."""
    short: bool = False
    """Memory still lacks room after the plan (pinned victims stayed)."""


PIN_CHUNK = 4096
"""Ids handled per lock hold by pin, unpin and release (~10 ms): a pin of a
million blocks must not stall memory hits for seconds."""


@contextmanager
def _unlinking(paths: list[str]) -> Iterator[None]:
    """Unlink ``paths`` on the way out, whatever happened: their index entries are gone."""
    try:
        yield
    finally:
        unlink_quietly(paths)


def _chunks(block_ids: Iterable[str]) -> Iterator[list[BlockId]]:
    """Well-formed ids, in lists of at most ``PIN_CHUNK``."""
    ids = [b for b in block_ids if is_block_id(b)]
    for i in range(0, len(ids), PIN_CHUNK):
        yield ids[i : i + PIN_CHUNK]


class TieredStore:
    """Memory + SSD block store. Every method is safe to call from any thread."""

    def __init__(self, config: StoreConfig) -> None:
        """Blocking when there is an SSD tier: scans its folder to rebuild the index.

        Blocks found on SSD are part of ``block_ids()`` but not of the first
        ``drain_changes()``: the worker reports them in its full block report.
        """
        self.config = config
        self._lock = threading.Lock()
        self._writer = threading.Lock()
        self._pins = PinSet()
        has_ssd = config.ssd_dir is not None
        # Memory may offer pinned blocks (last) when an SSD can take them: demotion keeps them.
        self._mem_policy = PinAwarePolicy(make_policy(config.policy), self._pins, movable=has_ssd)
        self._mem = MemoryTier(config.memory_bytes, self._mem_policy)
        self._ssd: SsdTier | None = None
        self._ssd_policy: PinAwarePolicy | None = None
        if config.ssd_dir is not None:
            self._ssd_policy = PinAwarePolicy(make_policy(config.policy), self._pins)
            self._ssd = SsdTier(config.ssd_dir, config.ssd_bytes, self._ssd_policy, fsync=config.fsync)
        self._copies: dict[BlockId, None] = {}  # blocks in both tiers, oldest promotion first
        self._quotas = QuotaLedger(config.policy, self._pins)
        self._added: set[BlockId] = set()
        self._removed: set[BlockId] = set()
        self._stats: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
        self._ssd_faults = WriteFaults()  # guarded by _writer, as every SSD write is
        self._closed = False

    # -- fast, no I/O ------------------------------------------------------------

    def tier_of(self, block_id: str) -> Tier | None:
        """The fastest tier holding the block, or None. No I/O."""
        with self._lock:
            if block_id in self._mem:
                return "memory"
            if self._ssd is not None and block_id in self._ssd:
                return "ssd"
            return None

    def get_memory(self, block_id: str) -> memoryview | None:
        """The block from memory (recording an access), or None. No I/O."""
        with self._lock:
            view = self._mem.get(block_id)
            if view is not None:
                self._stats["memory_hits"] += 1
                self._quotas.access(block_id)
            return view

    def usage(self) -> dict[str, int]:
        """Bytes used per tier (SSD: file bytes, headers included)."""
        with self._lock:
            return {"memory": self._mem.used, "ssd": 0 if self._ssd is None else self._ssd.used}

    def capacity(self) -> dict[str, int]:
        """Budget per tier (SSD 0 without an SSD tier)."""
        ssd = 0 if self._ssd is None else self._ssd.capacity
        return {"memory": self._mem.capacity, "ssd": ssd}

    def block_ids(self) -> list[str]:
        """Every resident block, once each (for the full block report)."""
        with self._lock:
            ids = self._mem.ids()
            if self._ssd is not None:
                ids += [b for b in self._ssd.ids() if b not in self._mem]
            return ids

    def drain_changes(self) -> tuple[list[str], list[str]]:
        """(added, removed) blocks since the last drain, net of each other.

        A block added then removed (or removed then added back) in between is
        in neither list. Moves between tiers are not changes.
        """
        with self._lock:
            added, removed = sorted(self._added), sorted(self._removed)
            self._added.clear()
            self._removed.clear()
            return added, removed

    def stats(self) -> dict[str, int]:
        """Counters (see ``COUNTERS``), ``corrupt_dropped`` and block counts."""
        with self._lock:
            out = dict(self._stats)
            out["corrupt_dropped"] = 0 if self._ssd is None else self._ssd.corrupt_dropped
            out["memory_blocks"] = len(self._mem)
            out["ssd_blocks"] = 0 if self._ssd is None else len(self._ssd)
            out["ssd_copies"] = len(self._copies)
            out["pinned_ids"] = len(self._pins)
            out["pinned_blocks"] = len(self._resident_pinned())
            out["pinned_memory_bytes"] = self._mem_policy.pinned_bytes
            out["pinned_ssd_bytes"] = 0 if self._ssd_policy is None else self._ssd_policy.pinned_bytes
            return out

    # -- pins ------------------------------------------------------------------------

    def pin(self, block_ids: Iterable[str]) -> int:
        """Keep blocks on this node whatever the pressure; how many were newly pinned.

        Ids need not be resident: a block pinned before it arrives is pinned
        from its first put. Pins live in memory only (the master re-sends them).
        """
        return self._change_pins(block_ids, self._pins.pin)

    def unpin(self, block_ids: Iterable[str]) -> int:
        """Make blocks ordinary eviction candidates again; how many were pinned."""
        return self._change_pins(block_ids, self._pins.unpin)

    def release(self, block_ids: Iterable[str]) -> int:
        """Unpin blocks and make them the first to go; how many resident blocks were newly released."""
        return self._change_pins(block_ids, self._release_locked)

    def pinned(self) -> list[str]:
        """Every pinned id (resident or not), sorted."""
        with self._lock:
            return self._pins.pinned()

    def is_pinned(self, block_id: str) -> bool:
        with self._lock:
            return self._pins.is_pinned(block_id)

    def _change_pins(self, block_ids: Iterable[str], change: Callable[[list[BlockId]], list[BlockId]]) -> int:
        """Apply ``change`` (ids -> the ids it changed) chunk by chunk; how many changed."""
        count = 0
        for chunk in _chunks(block_ids):
            with self._lock:
                changed = change(chunk)
                self._changed(changed)
                count += len(changed)
        return count

    def _release_locked(self, ids: list[BlockId]) -> list[BlockId]:
        self._changed(self._pins.unpin(ids))
        # Only resident blocks are marked: one arriving later is an ordinary block.
        return self._pins.release([b for b in ids if self._resident(b)])

    def _changed(self, ids: list[BlockId]) -> None:
        self._quotas.changed(ids)
        self._mem_policy.changed(ids)
        if self._ssd_policy is not None:
            self._ssd_policy.changed(ids)

    def _resident(self, block_id: BlockId) -> bool:
        return block_id in self._mem or (self._ssd is not None and block_id in self._ssd)

    def _resident_pinned(self) -> set[BlockId]:
        ids = set(self._mem_policy.pinned_ids())
        if self._ssd_policy is not None:
            ids.update(self._ssd_policy.pinned_ids())
        return ids

    # -- blocking ------------------------------------------------------------------

    def open_ssd(self, block_id: str) -> SsdHandle | None:
        """Open a verified SSD block for ``sendfile`` (records an access). Blocking.

        None when not on SSD; a corrupt file is deleted and None returned.
        Does not promote.
        """
        with self._lock:
            loc = self._locate_ssd(block_id)
        if loc is None:
            return None
        try:
            handle = open_block(loc[0])
        except (ChecksumMismatch, FileNotFoundError) as exc:
            self._drop_bad(block_id, loc[1], corrupt=isinstance(exc, ChecksumMismatch))
            return None
        self._note_ssd_hit(block_id)
        return handle

    def read(self, block_id: str) -> bytes | None:
        """The block's bytes from either tier, verified when from SSD. Blocking.

        Promotes an SSD hit when ``config.promote_on_hit``.
        """
        with self._lock:
            data = self._mem.peek(block_id)
            if data is not None:
                self._mem.touch(block_id)
                self._stats["memory_hits"] += 1
                self._quotas.access(block_id)
                return data
            loc = self._locate_ssd(block_id)
        if loc is None:
            return None
        data = self._read_ssd(block_id, *loc)
        if data is not None:
            self._note_ssd_hit(block_id)
            if self.config.promote_on_hit and len(data) <= self._mem.capacity:
                self._admit(block_id, data)
        return data

    def put(self, block_id: str, data: bytes, group: str = UNCHARGED) -> None:
        """Add a block charged to ``group``: into memory, or straight to SSD when larger than memory.

        Re-putting a resident block only records an access (its group stays).
        Raises NoCapacity when the block fits no tier or its group's quota,
        InterfaceError for a malformed id.
        """
        if not is_block_id(block_id):
            raise InterfaceError(f"malformed block id {block_id!r}")
        data = bytes(data)  # no copy for bytes
        if self._touch(block_id):
            return
        if len(data) > self._mem.capacity:
            self._put_ssd(block_id, data, group)
            return
        dropped: list[str] = []
        with self._writer, _unlinking(dropped):
            with self._lock:
                self._check_open()
                if self._touch_locked(block_id):
                    return  # another thread put it meanwhile
                self._quota_room(block_id, group, len(data), dropped)
                plan = self._plan_memory(len(data))
            self._apply(plan)
            with self._lock:
                self._commit(plan)
                if plan.short:
                    self._stats["refused_pinned"] += 1
                    raise NoCapacity(f"no room for block {block_id}: the rest of memory is pinned")
                self._mem.put(block_id, data)
                self._added_block(block_id, group, len(data))

    def set_quotas(self, limits: dict[str, int]) -> None:
        """Replace every group's limit in bytes (a group not named has none)."""
        with self._lock:
            self._quotas.set_limits(limits)

    def quotas(self) -> dict[str, tuple[int, int | None]]:
        """(bytes charged, limit or None) per group with blocks here or a limit."""
        with self._lock:
            limits = self._quotas.limits()
            return {g: (used, limits.get(g)) for g, used in self._quotas.usage().items()}

    def group_of(self, block_id: str) -> str:
        """The group a resident block is charged to ("" when uncharged or absent)."""
        with self._lock:
            return self._quotas.group_of(block_id)

    def promote(self, block_id: str) -> bool:
        """Copy an SSD block into memory (demoting others). Blocking.

        True when the block is in memory afterwards. The SSD copy is kept.
        """
        with self._lock:
            if self._mem.touch(block_id):
                return True
            loc = self._locate_ssd(block_id)
            length = None if loc is None or self._ssd is None else self._ssd.length(block_id)
        if loc is None or length is None or length > self._mem.capacity:
            return False
        data = self._read_ssd(block_id, *loc)
        return data is not None and self._admit(block_id, data)

    def remove(self, block_ids: Iterable[str]) -> int:
        """Drop blocks from both tiers; returns how many were resident. Blocking."""
        wanted = [b for b in block_ids if is_block_id(b)]
        paths: list[str] = []
        with self._writer:
            with self._lock:
                count = self._drop_locked(wanted, paths)
                self._stats["removed"] += count
            unlink_quietly(paths)
        return count

    def check(self) -> int:
        """Repair pass: fully verify every SSD block, dropping bad ones. Blocking."""
        if self._ssd is None:
            return 0
        with self._lock:
            ssd = self._ssd
            items = [(b, ssd.path(b), ssd.generation(b) or 0) for b in ssd.ids()]
        dropped = 0
        for block_id, path, gen in items:
            try:
                open_block(path).close()
            except (ChecksumMismatch, FileNotFoundError) as exc:
                corrupt = isinstance(exc, ChecksumMismatch)
                dropped += self._drop_bad(block_id, gen, corrupt=corrupt)
        return dropped

    def close(self) -> None:
        """Release memory; SSD files stay for the next start. Later puts fail."""
        with self._writer, self._lock:
            self._closed = True
            for b in self._mem.ids():
                self._mem.pop(b)
            self._copies.clear()

    # -- internals -------------------------------------------------------------------

    def _drop_locked(self, block_ids: Iterable[BlockId], paths: list[str]) -> int:
        """Take blocks out of both tiers (their files join ``paths``); how many were resident."""
        count = 0
        for b in block_ids:
            in_mem = self._mem.pop(b) is not None
            path = None if self._ssd is None else self._ssd.discard(b)
            self._copies.pop(b, None)
            if path is not None:
                paths.append(path)
            if in_mem or path is not None:
                count += 1
                self._note_removed(b)
        return count

    def _quota_room(self, block_id: BlockId, group: str, size: int, paths: list[str]) -> None:
        """Drop the group's own blocks so ``size`` bytes fit its quota; lock held.

        Their files join ``paths``, to unlink once the lock is released. NoCapacity,
        before anything changes, when the quota cannot make room.
        """
        victims = self._quotas.victims(group, size)
        if victims is None:
            self._stats["refused_quota"] += 1
            raise NoCapacity(f"block {block_id} does not fit the cache quota of {group!r}")
        self._stats["quota_evictions"] += self._drop_locked(victims, paths)

    def _added_block(self, block_id: BlockId, group: str, size: int) -> None:
        """A put landed; lock held."""
        self._note_added(block_id)
        self._quotas.charge(block_id, group, size)
        self._stats["puts"] += 1

    def _check_open(self) -> None:
        if self._closed:
            raise InterfaceError("the store is closed")

    def _touch(self, block_id: BlockId) -> bool:
        with self._lock:
            return self._touch_locked(block_id)

    def _touch_locked(self, block_id: BlockId) -> bool:
        if self._mem.touch(block_id) or (self._ssd is not None and self._ssd.touch(block_id)):
            self._quotas.access(block_id)
            return True
        return False

    def _locate_ssd(self, block_id: str) -> tuple[str, int] | None:
        """(path, generation) of an SSD block; lock held."""
        if self._ssd is None or not is_block_id(block_id):
            return None
        gen = self._ssd.generation(block_id)
        return None if gen is None else (self._ssd.path(block_id), gen)

    def _note_ssd_hit(self, block_id: BlockId) -> None:
        with self._lock:
            if self._ssd is not None:
                self._ssd.touch(block_id)
            self._stats["ssd_hits"] += 1
            self._quotas.access(block_id)

    def _read_ssd(self, block_id: BlockId, path: str, gen: int) -> bytes | None:
        try:
            return read_block(path)
        except (ChecksumMismatch, FileNotFoundError) as exc:
            self._drop_bad(block_id, gen, corrupt=isinstance(exc, ChecksumMismatch))
            return None

    def _drop_bad(self, block_id: BlockId, gen: int, *, corrupt: bool) -> bool:
        """Drop a corrupt or vanished SSD file, if still the same incarnation."""
        assert self._ssd is not None
        with self._writer:
            with self._lock:
                path = self._ssd.discard(block_id, gen, corrupt=corrupt)
                if path is None:
                    return False  # evicted or replaced meanwhile: not ours to drop
                if not corrupt:
                    self._stats["missing_dropped"] += 1
                if block_id in self._mem:
                    self._copies.pop(block_id, None)
                else:
                    self._note_removed(block_id)
            unlink_quietly([path])
        return True

    def _put_ssd(self, block_id: BlockId, data: bytes, group: str) -> None:
        ssd = self._ssd
        if ssd is None or file_size(len(data)) > ssd.capacity:
            raise NoCapacity(f"block {block_id} ({len(data)} bytes) is larger than every tier")
        dropped: list[str] = []
        with self._writer, _unlinking(dropped):
            with self._lock:
                self._check_open()
                if self._touch_locked(block_id):
                    return
                self._quota_room(block_id, group, len(data), dropped)
                plan = _Plan()
                if not self._free_ssd(plan, file_size(len(data)), leaving=set(), keep=None, strict=True):
                    self._stats["refused_pinned"] += 1
                    raise NoCapacity(f"no room for block {block_id}: the SSD tier is pinned")
            unlink_quietly(plan.unlink)
            exc = self._write_ssd(ssd, block_id, data)
            if exc is not None:
                with self._lock:
                    self._stats["ssd_write_errors"] += 1
                raise NoCapacity(f"cannot write block {block_id} to SSD: {exc}") from exc
            with self._lock:
                ssd.add(block_id, len(data))
                self._added_block(block_id, group, len(data))

    def _admit(self, block_id: BlockId, data: bytes) -> bool:
        """Insert an SSD block's bytes into memory, keeping the SSD copy."""
        with self._writer:
            with self._lock:
                if self._closed or self._ssd is None:
                    return False
                if self._mem.touch(block_id):
                    return True
                if block_id not in self._ssd:
                    return False  # removed meanwhile: do not bring it back
                # A promotion never moves pinned blocks: it is only a speed-up,
                # and a plan that keeps them may drop this block's SSD copy.
                victims = self._mem.victims(self._mem.used + len(data) - self._mem.capacity)
                if any(self._pins.is_pinned(v) for v in victims):
                    return False
                try:
                    plan = self._plan_memory(len(data), keep=block_id)
                except NoCapacity:
                    return False  # memory is pinned: the block is served from SSD
            self._apply(plan)
            with self._lock:
                self._commit(plan)
                self._mem.put(block_id, data)
                if block_id in self._ssd:
                    self._copies[block_id] = None
                self._stats["promotions"] += 1
            unlink_quietly(plan.late_unlink)
        return True

    def _plan_memory(self, size: int, keep: BlockId | None = None) -> _Plan:
        """Decide how memory makes room for ``size`` bytes; lock held.

        Pinned victims (offered last, and only with an SSD) are demoted, never
        evicted: one that cannot move stays, and ``plan.short`` says memory
        will still lack room. NoCapacity, before anything changes, when even
        that cannot work: the tier cannot free enough unpinned bytes.
        """
        plan = _Plan()
        need = self._mem.used + size - self._mem.capacity
        victims = self._mem.victims(need)
        self._check_room(victims, need)
        ssd = self._ssd
        pinned: list[tuple[BlockId, bytes]] = []
        for v in victims:
            data = self._mem.peek(v)
            assert data is not None
            if ssd is not None and v in ssd:
                plan.drop.append(v)
            elif self._pins.is_released(v):
                plan.evict.append(v)  # not worth SSD room: nobody needs it any more
            elif ssd is not None and file_size(len(data)) <= ssd.capacity:
                (pinned if self._pins.is_pinned(v) else plan.demote).append((v, data))
            elif self._pins.is_pinned(v):
                plan.stay.append(v)
            else:
                plan.evict.append(v)
        plan.demote = pinned + plan.demote  # pinned blocks get SSD room first
        if ssd is not None and plan.demote:
            incoming = sum(file_size(len(d)) for _, d in plan.demote)
            self._free_ssd(plan, incoming, leaving=set(victims), keep=keep)
            # Several demotions may outgrow even an emptied SSD: evict the rest.
            room = ssd.capacity - ssd.used
            if plan.release is not None:
                room += file_size(ssd.length(plan.release) or 0)
            fitting: list[tuple[BlockId, bytes]] = []
            for v, d in plan.demote:
                if file_size(len(d)) <= room:
                    fitting.append((v, d))
                    room -= file_size(len(d))
                else:
                    (plan.stay if self._pins.is_pinned(v) else plan.evict).append(v)
            plan.demote = fitting
        if plan.stay:
            kept = sum(self._mem.size_of(v) or 0 for v in plan.stay)
            plan.short = sum(self._mem.size_of(v) or 0 for v in victims) - kept < need
        return plan

    def _check_room(self, victims: list[BlockId], need: int) -> None:
        """NoCapacity when ``victims`` cannot free ``need`` memory bytes; lock held."""
        if need <= 0:
            return
        offered = sum(self._mem.size_of(v) or 0 for v in victims)
        ssd = self._ssd
        if offered >= need and ssd is not None and self._ssd_policy is not None:
            # Pinned victims must fit on SSD beside the pinned blocks already there.
            moving = sum(
                file_size(self._mem.size_of(v) or 0)
                for v in victims
                if self._pins.is_pinned(v) and v not in ssd
            )
            if moving and self._ssd_policy.pinned_bytes + moving > ssd.capacity:
                offered = 0
        if offered < need:
            self._stats["refused_pinned"] += 1
            raise NoCapacity("no room: the blocks that could make room are pinned")

    def _free_ssd(
        self,
        plan: _Plan,
        incoming: int,
        leaving: set[BlockId],
        keep: BlockId | None,
        *,
        strict: bool = False,
    ) -> bool:
        """Drop SSD index entries so ``incoming`` file bytes fit; lock held.

        Redundant copies go first, except those of blocks leaving memory in
        this plan (they become the only copy). Next the copy of ``keep``, the
        block being promoted (see ``_Plan.release``). Then the policy's victims
        (released blocks first, pinned ones never). False when that is not
        enough; with ``strict``, nothing is dropped then.
        """
        ssd = self._ssd
        assert ssd is not None
        need = ssd.used + incoming - ssd.capacity
        if need <= 0:
            return True
        chosen: list[BlockId] = []
        freed = 0
        for b in self._copies:
            if freed >= need:
                break
            if b not in leaving and b != keep:
                chosen.append(b)
                freed += file_size(ssd.length(b) or 0)
        release = None
        if freed < need and keep is not None and keep in ssd:
            # Redundant once promoted, but dropped only at commit: until the
            # block is readable from memory, it stays readable from SSD (the
            # disk briefly holds this one file beyond the budget).
            release = keep
            freed += file_size(ssd.length(keep) or 0)
        if freed < need:
            # Asking for the whole need (plus ``keep``) leaves enough after
            # skipping the copies already chosen and ``keep``.
            skip = set(chosen)
            extra = file_size(ssd.length(keep) or 0) if keep is not None else 0
            for b in ssd.victims(need + extra):
                if freed >= need:
                    break
                if b not in skip and b != keep:
                    chosen.append(b)
                    freed += file_size(ssd.length(b) or 0)
        if strict and freed < need:
            return False
        plan.release = release
        for b in chosen:
            path = ssd.discard(b)
            assert path is not None
            plan.unlink.append(path)
            if b in self._mem:
                self._copies.pop(b, None)
                self._stats["ssd_copy_drops"] += 1
            else:
                self._note_removed(b)
                self._stats["evictions"] += 1
        return freed >= need

    def _apply(self, plan: _Plan) -> None:
        """File I/O of a plan: ``_writer`` held, ``_lock`` not."""
        unlink_quietly(plan.unlink)
        for block_id, data in plan.demote:
            assert self._ssd is not None
            if self._write_ssd(self._ssd, block_id, data) is None:
                plan.written.append(block_id)
            else:
                plan.failed.append(block_id)

    def _write_ssd(self, ssd: SsdTier, block_id: BlockId, data: bytes) -> OSError | None:
        """Write one block file (``_writer`` held); the error, logged once per run of failures."""
        try:
            ssd.write_file(block_id, data)
        except OSError as exc:
            if self._ssd_faults.failed():
                log.error(
                    "SSD tier %s: cannot write blocks (%s); blocks that leave memory are "
                    "evicted instead and served from the under-store, counted as "
                    "ssd_write_errors, until writes work again",
                    ssd.root, exc,
                )  # fmt: skip
            return exc
        run = self._ssd_faults.succeeded()
        if run:
            log.warning("SSD tier %s: writes work again after %d failed", ssd.root, run)
        return None

    def _commit(self, plan: _Plan) -> None:
        """Move the plan's victims out of memory; lock held."""
        if plan.release is not None and self._ssd is not None:
            path = self._ssd.discard(plan.release)
            if path is not None:
                plan.late_unlink.append(path)
                self._stats["ssd_copy_drops"] += 1
        for b in plan.written:
            data = self._mem.pop(b)
            assert data is not None and self._ssd is not None  # only _writer holders pop
            self._ssd.add(b, len(data))
            self._stats["demotions"] += 1
        for b in plan.drop:
            self._mem.pop(b)
            if self._ssd is not None and b in self._ssd:
                self._copies.pop(b, None)
                self._stats["demotions"] += 1
            else:  # its copy was dropped while planning: gone from the node
                self._note_removed(b)
                self._stats["evictions"] += 1
        self._stats["ssd_write_errors"] += len(plan.failed)
        for b in plan.evict + plan.failed:
            self._mem.pop(b)
            self._note_removed(b)
            self._stats["evictions"] += 1

    def _note_added(self, block_id: BlockId) -> None:
        if block_id in self._removed:
            self._removed.discard(block_id)
        else:
            self._added.add(block_id)

    def _note_removed(self, block_id: BlockId) -> None:
        self._pins.left(block_id)
        self._quotas.uncharge(block_id)
        if block_id in self._added:
            self._added.discard(block_id)
        else:
            self._removed.add(block_id)

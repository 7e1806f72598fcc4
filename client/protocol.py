"""Wire contract between clients, the master and workers.

Bodies are msgpack maps. Every message is a frozen dataclass with ``to_wire``
and a validating ``from_wire``: input from the network is hostile until it has
been checked field by field here, so handlers only ever see typed values.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import msgpack

from ..tiering.blocks import is_block_id, object_block_id
from ..tiering.errors import BadRequest, CacheError, error_from_code

MSGPACK = "application/x-msgpack"
API = "/api/v1"
MAX_BODY = 256 * 1024 * 1024
"""Largest msgpack body accepted (a full block report of ~10M blocks)."""

# Master endpoints.
REGISTER = f"{API}/register"
HEARTBEAT = f"{API}/heartbeat"
WORKERS = f"{API}/workers"
LOCATE = f"{API}/locate"
STAT = f"{API}/stat"
LIST = f"{API}/list"
BUCKETS = f"{API}/buckets"
HEAD_BUCKET = f"{API}/head_bucket"
INVALIDATE = f"{API}/invalidate"
INVALIDATIONS = f"{API}/invalidations"
"""POST InvalidationsRequest -> InvalidationsReply: the invalidation feed (a long poll)."""
CONFIG = f"{API}/config"
JOBS = f"{API}/jobs"
"""GET: every job (JobsReply); POST: start a load job (LoadRequest -> JobInfo)."""
JOB_GET = f"{API}/jobs/get"
JOB_CANCEL = f"{API}/jobs/cancel"
HOLDS = f"{API}/holds"
"""GET: every hold (HoldsReply); POST: create or extend a hold (HoldRequest -> HoldInfo)."""
HOLD_RELEASE = f"{API}/holds/release"
FREE = f"{API}/free"
TTL = f"{API}/ttl"
QUOTAS = f"{API}/quotas"
"""GET: every tenant's cache quota (QuotasReply); POST: set some (QuotaRequest -> QuotasReply)."""
# Worker endpoint: GET BLOCKS/{block_id}?<BlockRef query>, optional Range header.
BLOCKS = "/blocks"
HEALTH = "/health"
METRICS = "/metrics"

# Response headers a worker sets on a block.
H_TIER = "X-Pipecache-Tier"
"""Where the block came from: memory, ssd or ufs."""
H_BLOCK_LENGTH = "X-Pipecache-Block-Length"

TIERS = ("memory", "ssd")

T = TypeVar("T", bound="Message")


def pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def unpack(data: bytes) -> Any:
    """Decode a msgpack body with limits; raise BadRequest on anything malformed."""
    if len(data) > MAX_BODY:
        raise BadRequest(f"body of {len(data)} bytes is over the {MAX_BODY} byte limit")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise BadRequest(f"malformed msgpack body: {exc.__class__.__name__}") from None


def _check(value: Any, tp: Any, where: str) -> Any:
    """Validate ``value`` against a (simple) annotation; return it, normalised."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _check(value, arg, where)
            except BadRequest:
                continue
        raise BadRequest(f"{where}: unexpected {type(value).__name__}")
    if tp is type(None):
        if value is not None:
            raise BadRequest(f"{where}: expected nil")
        return None
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise BadRequest(f"{where}: expected a list")
        return [_check(v, item, f"{where}[]") for v in value]
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise BadRequest(f"{where}: expected a map")
        return {_check(k, kt, f"{where} key"): _check(v, vt, f"{where}[]") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Message):
        return tp.from_wire(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(f"{where}: expected a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"{where}: expected an integer")
        return value
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise BadRequest(f"{where}: expected {tp.__name__}")
        return value
    raise TypeError(f"unsupported annotation {tp!r}")  # a bug in a message definition


class Message:
    """Base of wire messages: dataclasses that (de)serialise to msgpack maps."""

    _hints: ClassVar[dict[str, Any]]

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, Message):
                v = v.to_wire()
            elif isinstance(v, list) and v and isinstance(v[0], Message):
                v = [m.to_wire() for m in v]
            out[f.name] = v
        return out

    def pack(self) -> bytes:
        return pack(self.to_wire())

    @classmethod
    def from_wire(cls: type[T], data: Any) -> T:
        if not isinstance(data, dict):
            raise BadRequest(f"{cls.__name__}: expected a map")
        hints = cls.__dict__.get("_hints")
        if hints is None:
            hints = typing.get_type_hints(cls)
            cls._hints = hints
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                kwargs[f.name] = _check(data[f.name], hints[f.name], f"{cls.__name__}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise BadRequest(f"{cls.__name__}: missing field {f.name!r}")
        obj = cls(**kwargs)
        obj.validate()
        return obj

    @classmethod
    def unpack(cls: type[T], body: bytes) -> T:
        return cls.from_wire(unpack(body))

    def validate(self) -> None:
        """Check invariants beyond types; raise BadRequest."""


def _check_ids(ids: list[str], where: str) -> None:
    for b in ids:
        if not is_block_id(b):
            raise BadRequest(f"{where}: malformed block id {b[:40]!r}")


MAX_STATS = 64
"""Most counters one worker may report (the master keeps them all per worker)."""


MAX_TAGS = 4096
"""Most read tags (holds) one heartbeat may carry counts for."""


def _check_tag_reads(counts: dict[str, list[int]], where: str) -> None:
    if len(counts) > MAX_TAGS:
        raise BadRequest(f"{where}: over {MAX_TAGS} tags")
    for tag, c in counts.items():
        if not 0 < len(tag) <= MAX_HOLD_NAME or len(c) != 2 or not 0 <= c[1] <= c[0]:
            raise BadRequest(f"{where}: tag {tag[:40]!r} needs [reads, hits] with 0 <= hits <= reads")


def _check_stats(stats: dict[str, int], where: str) -> None:
    if len(stats) > MAX_STATS:
        raise BadRequest(f"{where}: over {MAX_STATS} counters")
    for k, v in stats.items():
        if not 0 < len(k) <= 64 or v < 0:
            raise BadRequest(f"{where}: counter {k[:40]!r} must be named (1..64 characters) and >= 0")


@dataclass(frozen=True, slots=True)
class ErrorBody(Message):
    code: str
    message: str = ""

    def to_error(self) -> CacheError:
        return error_from_code(self.code, self.message)


# ---- objects and listings -------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectInfo(Message):
    """Metadata of one object version, as the under-store reports it."""

    bucket: str
    key: str
    size: int
    etag: str
    """The ETag without quotes."""
    last_modified: float
    """Seconds since the epoch."""
    block_size: int = 4 * 1024 * 1024
    content_type: str = ""
    """The stored Content-Type ("" when unknown: readers fall back to a default)."""
    metadata: dict[str, str] = field(default_factory=dict)
    """User metadata (``x-amz-meta-*`` names without the prefix, lower-case)."""
    partial: bool = False
    """True when built from a listing entry: content_type and metadata are not known."""
    fresh_for: float = 0.0
    """Seconds the master still trusts this metadata (in a stat reply; 0: not said). A
    gateway that reuses it never reuses it longer, so the consistency mode's bound holds."""

    def validate(self) -> None:
        if self.size < 0 or self.block_size <= 0:
            raise BadRequest("ObjectInfo: negative size or block size")
        if not self.fresh_for >= 0:  # also refuses NaN
            raise BadRequest("ObjectInfo: negative fresh_for")

    def to_wire(self) -> dict[str, Any]:
        out = Message.to_wire(self)
        # The appended fields travel only when set: peers that predate them see the old shape.
        for name in ("content_type", "metadata", "partial", "fresh_for"):
            if not out[name]:
                del out[name]
        return out

    def block_id(self, index: int) -> str:
        return object_block_id(self.bucket, self.key, self.etag, self.size, self.block_size, index)


@dataclass(frozen=True, slots=True)
class ListEntry(Message):
    key: str
    size: int
    etag: str
    last_modified: float


@dataclass(frozen=True, slots=True)
class ListPage(Message):
    """One page of a listing in key order; ``next_token`` resumes after it."""

    entries: list[ListEntry] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_token: str | None = None


@dataclass(frozen=True, slots=True)
class BucketInfo(Message):
    name: str
    created: float = 0.0


@dataclass(frozen=True, slots=True)
class StatRequest(Message):
    bucket: str
    key: str
    full: bool = False
    """Ask for content type and metadata too: a cached listing entry is not enough."""


@dataclass(frozen=True, slots=True)
class BucketRequest(Message):
    bucket: str


@dataclass(frozen=True, slots=True)
class ListRequest(Message):
    bucket: str
    prefix: str = ""
    delimiter: str = ""
    start_after: str = ""
    token: str | None = None
    max_keys: int = 1000

    def validate(self) -> None:
        if not 0 <= self.max_keys <= 1000:
            raise BadRequest("ListRequest: max_keys must be 0..1000")


@dataclass(frozen=True, slots=True)
class BucketsReply(Message):
    buckets: list[BucketInfo] = field(default_factory=list)


# ---- workers and blocks -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerInfo(Message):
    worker_id: str
    address: str
    """Base URL of the worker's block server, e.g. http://10.0.0.5:9100."""
    capacity: dict[str, int] = field(default_factory=dict)
    """Budget in bytes per tier name."""
    usage: dict[str, int] = field(default_factory=dict)
    """Bytes used per tier name."""
    blocks: int = 0
    last_seen: float = 0.0
    stats: dict[str, int] = field(default_factory=dict)
    """The worker's cumulative cache counters (names in ``client.stats``; empty: none reported)."""
    tenants: dict[str, int] = field(default_factory=dict)
    """Bytes of this worker's cache charged to each tenant (see ``HeartbeatRequest.tenants``)."""

    def validate(self) -> None:
        _check_stats(self.stats, "WorkerInfo.stats")
        _check_quotas(self.tenants, "WorkerInfo.tenants")

    @property
    def weight(self) -> float:
        """Placement weight: total capacity in GiB (at least a tiny positive weight)."""
        return max(sum(self.capacity.values()) / (1 << 30), 1e-3)


@dataclass(frozen=True, slots=True)
class RegisterRequest(Message):
    """A worker's (re)registration with its full block report."""

    worker_id: str
    address: str
    capacity: dict[str, int] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    blocks: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if not self.worker_id or len(self.worker_id) > 128:
            raise BadRequest("RegisterRequest: worker_id must be 1..128 characters")
        if not self.address.startswith(("http://", "https://")):
            raise BadRequest("RegisterRequest: address must be an http(s) URL")
        _check_ids(self.blocks, "RegisterRequest.blocks")


@dataclass(frozen=True, slots=True)
class RegisterReply(Message):
    worker_id: str
    heartbeat_interval: float
    ufs: str
    """Under-store URI the worker reads misses from (credentials come from its own env)."""


@dataclass(frozen=True, slots=True)
class HeartbeatRequest(Message):
    """Block deltas since the last acknowledged heartbeat, and tier usage."""

    worker_id: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    load_failed: list[LoadFailure] = field(default_factory=list)
    """Load tasks that failed since the last acknowledged beat (the master retries or gives up)."""
    stats: dict[str, int] = field(default_factory=dict)
    """Cumulative cache counters since the worker started (see ``client.stats``); empty from
    workers that predate them."""
    tenants: dict[str, int] = field(default_factory=dict)
    """Bytes charged to each tenant on this worker now (tenants with a share or blocks here)."""
    tag_reads: dict[str, list[int]] = field(default_factory=dict)
    """Hold name -> [reads, hits]: block reads of the hold's blocks served since its tag
    reached the worker (or since the worker registered), cumulative."""

    def validate(self) -> None:
        _check_ids(self.added, "HeartbeatRequest.added")
        _check_ids(self.removed, "HeartbeatRequest.removed")
        _check_ids([f.block_id for f in self.load_failed], "HeartbeatRequest.load_failed")
        _check_stats(self.stats, "HeartbeatRequest.stats")
        _check_quotas(self.tenants, "HeartbeatRequest.tenants")
        _check_tag_reads(self.tag_reads, "HeartbeatRequest.tag_reads")

    def to_wire(self) -> dict[str, Any]:
        out = Message.to_wire(self)
        # An older master need not see the appended fields.
        for name in ("load_failed", "stats", "tenants", "tag_reads"):
            if not out[name]:
                del out[name]
        return out


@dataclass(frozen=True, slots=True)
class LoadFailure(Message):
    """A load task a worker could not carry out, and why."""

    block_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LoadTask(Message):
    """One block to bring into a worker's cache (the fields of a BlockRef)."""

    bucket: str
    key: str
    etag: str
    size: int
    block_size: int
    index: int

    def validate(self) -> None:
        if self.size < 0 or self.block_size <= 0 or self.index < 0:
            raise BadRequest("LoadTask: negative size, index or block size")
        if self.index * self.block_size >= max(self.size, 1):
            raise BadRequest("LoadTask: index past the end of the object")

    def ref(self) -> BlockRef:
        return BlockRef(self.bucket, self.key, self.etag, self.index, self.size, self.block_size)

    @classmethod
    def of(cls, ref: BlockRef) -> LoadTask:
        return cls(ref.bucket, ref.key, ref.etag, ref.size, ref.block_size, ref.index)


@dataclass(frozen=True, slots=True)
class Command(Message):
    """An instruction for a worker, carried in a heartbeat reply."""

    kind: str
    """'free' (drop blocks), 'load' (fetch ``loads`` into the cache), 'pin' (never evict
    ``blocks``, even before they arrive), 'unpin' (ordinary blocks again) or 'release'
    (unpin and evict them before anything else), 'quota' (this worker's share of each
    tenant's cache quota, in ``quotas``: replaces the previous shares), or 'untag' (forget
    ``tag``: its hold ended)."""
    blocks: list[str] = field(default_factory=list)
    loads: list[LoadTask] = field(default_factory=list)
    """For 'load': the blocks to fetch (``blocks`` holds their ids, in the same order)."""
    quotas: dict[str, int] = field(default_factory=dict)
    """For 'quota': tenant -> bytes it may use on this worker."""
    tag: str = ""
    """For 'pin' and 'untag': the hold whose reads of ``blocks`` the worker counts."""

    def validate(self) -> None:
        _check_quotas(self.quotas, "Command.quotas")
        if len(self.tag) > MAX_HOLD_NAME:
            raise BadRequest(f"Command.tag: over {MAX_HOLD_NAME} characters")

    def to_wire(self) -> dict[str, Any]:
        out = Message.to_wire(self)
        for name in ("loads", "quotas", "tag"):  # the appended fields travel only when set
            if not out[name]:
                del out[name]
        return out


@dataclass(frozen=True, slots=True)
class HeartbeatReply(Message):
    commands: list[Command] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WorkersReply(Message):
    workers: list[WorkerInfo] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LocateRequest(Message):
    ids: list[str] = field(default_factory=list)

    def validate(self) -> None:
        _check_ids(self.ids, "LocateRequest.ids")


@dataclass(frozen=True, slots=True)
class LocateReply(Message):
    locations: dict[str, list[str]] = field(default_factory=dict)
    """Block id -> ids of the workers that hold it (absent: held nowhere)."""


@dataclass(frozen=True, slots=True)
class BlockRef:
    """Everything a worker needs to fetch a block it does not hold.

    Sent as the query string of GET /blocks/{id}; the worker recomputes the id
    from these fields and refuses a mismatch, so nobody can plant bytes under
    another block's id.
    """

    bucket: str
    key: str
    etag: str
    index: int
    size: int
    block_size: int
    tenant: str = ""
    """Who is charged if the block is not cached yet (first toucher); "" nobody."""

    def block_id(self) -> str:
        """The id these coordinates name (a worker refuses a request whose id differs)."""
        return object_block_id(self.bucket, self.key, self.etag, self.size, self.block_size, self.index)

    def to_query(self) -> dict[str, str]:
        q = {
            "b": self.bucket,
            "k": self.key,
            "e": self.etag,
            "i": str(self.index),
            "s": str(self.size),
            "bs": str(self.block_size),
        }
        if self.tenant:
            q["t"] = self.tenant
        return q

    @classmethod
    def from_query(cls, q: typing.Mapping[str, str]) -> BlockRef:
        try:
            ref = cls(q["b"], q["k"], q["e"], int(q["i"]), int(q["s"]), int(q["bs"]), q.get("t", ""))
        except (KeyError, ValueError):
            raise BadRequest("block query needs b, k, e, i, s, bs") from None
        if ref.tenant:
            check_tenant(ref.tenant, "block query t")
        if ref.size < 0 or ref.block_size <= 0 or ref.index < 0:
            raise BadRequest("block query: negative size, index or block size")
        if ref.index * ref.block_size >= max(ref.size, 1):
            raise BadRequest("block query: index past the end of the object")
        return ref


# ---- writes ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InvalidateRequest(Message):
    """Forget cached metadata after a write: one ``key``, or every key under ``prefix``."""

    bucket: str
    key: str = ""
    prefix: str = ""

    def validate(self) -> None:
        if not self.bucket:
            raise BadRequest("InvalidateRequest: bucket is required")
        if self.key and self.prefix:
            raise BadRequest("InvalidateRequest: give a key or a prefix, not both")


@dataclass(frozen=True, slots=True)
class InvalidateReply(Message):
    dropped: int = 0
    """How many cached entries were dropped."""


@dataclass(frozen=True, slots=True)
class InvalidationsRequest(Message):
    """Long poll of the master's invalidation feed: what was invalidated after ``since``."""

    since: int = 0
    epoch: str = ""
    """The feed's epoch the caller's ``since`` belongs to ("" at first)."""
    wait: float = 20.0
    """Seconds to wait for a first invalidation when there is none yet."""

    def validate(self) -> None:
        if self.since < 0 or not 0 <= self.wait <= MAX_POLL_WAIT:
            raise BadRequest(f"InvalidationsRequest: since >= 0 and 0 <= wait <= {MAX_POLL_WAIT:g}")


MAX_POLL_WAIT = 60.0
MAX_INVALIDATIONS = 10_000
"""Most invalidations one feed reply carries (more: a reset)."""


@dataclass(frozen=True, slots=True)
class InvalidationsReply(Message):
    epoch: str
    """Changes when the master restarts: a caller of another epoch gets ``reset``."""
    seq: int
    """The feed's position after ``events``: the next request's ``since``."""
    events: list[InvalidateRequest] = field(default_factory=list)
    reset: bool = False
    """The caller missed invalidations (another epoch, or too far behind): forget everything."""

    def validate(self) -> None:
        if self.seq < 0 or len(self.events) > MAX_INVALIDATIONS:
            raise BadRequest("InvalidationsReply: negative seq or too many events")


@dataclass(frozen=True, slots=True)
class ConfigReply(Message):
    """What a client needs to write: the under-store URI (credentials come from its own env)."""

    ufs: str
    block_size: int = 4 * 1024 * 1024
    consistency: str = "ttl=60"
    """The under-store's consistency mode (``client.consistency``): how long metadata may be reused."""


# ---- load jobs ---------------------------------------------------------------------


JOB_STATES = ("listing", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class LoadRequest(Message):
    """Start a load job: bring every object under ``paths`` into the cache."""

    paths: list[str]
    """``s3://bucket/prefix`` or ``bucket/prefix``; a path naming one object loads that object."""
    priority: int = 0
    """Blocks of higher-priority jobs are dispatched first."""
    hold: str = ""
    """Name of a hold every block of the job joins ("protect" kind, created on demand)."""

    def validate(self) -> None:
        if not self.paths:
            raise BadRequest("LoadRequest: give at least one path")
        for path in self.paths:
            split_path(path)
        if self.hold:
            _check_hold_name(self.hold, "LoadRequest.hold")

    def to_wire(self) -> dict[str, Any]:
        out = Message.to_wire(self)
        if not out["hold"]:  # the appended field travels only when set
            del out["hold"]
        return out


def split_path(path: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix`` or ``bucket/prefix``; BadRequest if no bucket."""
    rest = path[5:] if path.startswith("s3://") else path
    bucket, _, prefix = rest.partition("/")
    if not bucket or ("://" in path and not path.startswith("s3://")):
        raise BadRequest(f"load path {path[:100]!r}: expected s3://bucket/prefix")
    return bucket, prefix


@dataclass(frozen=True, slots=True)
class JobFailure(Message):
    """An object a job could not load, and why."""

    bucket: str
    key: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class JobInfo(Message):
    """A load job's state and progress."""

    id: str
    state: str
    """listing, running, done, failed or cancelled."""
    paths: list[str] = field(default_factory=list)
    priority: int = 0
    objects_total: int = 0
    objects_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    blocks_total: int = 0
    blocks_resident: int = 0
    failed: list[JobFailure] = field(default_factory=list)
    created: float = 0.0
    """Seconds since the epoch."""
    updated: float = 0.0
    throughput_bps: float = 0.0
    """Bytes per second made resident, over the last few seconds."""
    eta_seconds: float | None = None
    """Seconds left at that pace (None: unknown)."""
    reason: str = ""
    """Why the job failed as a whole (e.g. the bucket does not exist)."""

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def fraction(self) -> float:
        """Share of blocks resident (1.0 for a job with none)."""
        return self.blocks_resident / self.blocks_total if self.blocks_total else (
            1.0 if self.finished else 0.0
        )


@dataclass(frozen=True, slots=True)
class JobsReply(Message):
    jobs: list[JobInfo] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class JobRequest(Message):
    job_id: str


# ---- holds: pins, protection, free and TTL -----------------------------------------

HOLD_KINDS = ("pin", "protect")
"""Kinds a client may create; the master also keeps "ttl" entries (``TtlRequest``)."""
MAX_HOLD_NAME = 512


def _check_hold_name(name: str, where: str) -> None:
    if not name or len(name) > MAX_HOLD_NAME:
        raise BadRequest(f"{where}: a hold name must be 1..{MAX_HOLD_NAME} characters")


def _check_paths(paths: list[str], where: str) -> None:
    if not paths:
        raise BadRequest(f"{where}: give at least one path")
    for path in paths:
        split_path(path)


@dataclass(frozen=True, slots=True)
class HoldRequest(Message):
    """Keep every block under ``paths`` in the cache (adds to an existing hold of that name)."""

    name: str
    paths: list[str]
    kind: str = "pin"
    """"pin" (an operator's) or "protect" (a pipeline step will read it); both keep blocks."""
    ttl: float | None = None
    """Seconds until the hold lapses by itself (None: until released)."""

    def validate(self) -> None:
        _check_hold_name(self.name, "HoldRequest.name")
        _check_paths(self.paths, "HoldRequest")
        if self.kind not in HOLD_KINDS:
            raise BadRequest(f"HoldRequest.kind must be one of {', '.join(HOLD_KINDS)}")
        if self.ttl is not None and not 0 < self.ttl <= 10 * 365 * 86400:
            raise BadRequest("HoldRequest.ttl must be > 0 seconds (and under ten years)")


@dataclass(frozen=True, slots=True)
class HoldInfo(Message):
    """A hold: what it keeps (or, for "ttl", drops at expiry) and how much of it is cached."""

    name: str
    kind: str
    """pin, protect or ttl."""
    paths: list[str] = field(default_factory=list)
    created: float = 0.0
    """Seconds since the epoch."""
    expires: float | None = None
    """Seconds since the epoch (None: never)."""
    blocks: int = 0
    resident_blocks: int = 0
    state: str = "active"
    """active, or (in the reply that ends it) released or expired."""
    reads: int = 0
    """Block reads of the hold's blocks the workers served while it held them."""
    hits: int = 0
    """Those of ``reads`` served from memory or SSD (the rest came from the under-store)."""

    @property
    def hit_ratio(self) -> float | None:
        """Share of ``reads`` that were hits; None before the first read."""
        return self.hits / self.reads if self.reads else None


@dataclass(frozen=True, slots=True)
class HoldsReply(Message):
    holds: list[HoldInfo] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReleaseRequest(Message):
    """End a hold. ``evict_first``: its blocks become the first eviction candidates."""

    name: str
    evict_first: bool = True

    def validate(self) -> None:
        _check_hold_name(self.name, "ReleaseRequest.name")


@dataclass(frozen=True, slots=True)
class FreeRequest(Message):
    """Drop every cached block under ``paths``; blocks some hold keeps need ``force``."""

    paths: list[str]
    force: bool = False

    def validate(self) -> None:
        _check_paths(self.paths, "FreeRequest")


@dataclass(frozen=True, slots=True)
class FreeReply(Message):
    freed: int = 0
    """Cached blocks the workers were told to drop."""
    refused: int = 0
    """Cached blocks kept because a hold keeps them (0 with ``force``)."""


@dataclass(frozen=True, slots=True)
class TtlRequest(Message):
    """Drop the blocks under ``paths`` ``seconds`` from now (unless a hold keeps them then)."""

    paths: list[str]
    seconds: float

    def validate(self) -> None:
        _check_paths(self.paths, "TtlRequest")
        if not 0 < self.seconds <= 10 * 365 * 86400:
            raise BadRequest("TtlRequest.seconds must be > 0 (and under ten years)")


# ---- tenant cache quotas -------------------------------------------------------------

MAX_TENANT = 64
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_QUOTAS = 10_000
"""Most tenants one quota message may name."""


def check_tenant(name: str, where: str) -> None:
    """BadRequest unless ``name`` is a tenant name: 1..64 of A-Z a-z 0-9 . _ - (not first . _ -)."""
    if len(name) > MAX_TENANT or not _TENANT.fullmatch(name):
        allowed = f"1..{MAX_TENANT} of A-Z a-z 0-9 . _ -"
        raise BadRequest(f"{where}: {name[:80]!r} is not a tenant name ({allowed})")


def _check_quotas(quotas: dict[str, int], where: str) -> None:
    if len(quotas) > MAX_QUOTAS:
        raise BadRequest(f"{where}: over {MAX_QUOTAS} tenants")
    for name, limit in quotas.items():
        check_tenant(name, where)
        if limit < 0:
            raise BadRequest(f"{where}: the quota of {name!r} is negative")


@dataclass(frozen=True, slots=True)
class QuotaRequest(Message):
    """Set tenants' cache quotas (bytes over the whole cluster); ``unlimited`` ones lose theirs.

    Tenants named in neither keep what they had, so several gateways may send
    their tenants' quotas over and over: the request is idempotent.
    """

    quotas: dict[str, int] = field(default_factory=dict)
    unlimited: list[str] = field(default_factory=list)

    def validate(self) -> None:
        _check_quotas(self.quotas, "QuotaRequest.quotas")
        if len(self.unlimited) > MAX_QUOTAS:
            raise BadRequest(f"QuotaRequest.unlimited: over {MAX_QUOTAS} tenants")
        for name in self.unlimited:
            check_tenant(name, "QuotaRequest.unlimited")
            if name in self.quotas:
                raise BadRequest(f"QuotaRequest: {name!r} is both limited and unlimited")


@dataclass(frozen=True, slots=True)
class QuotasReply(Message):
    quotas: dict[str, int] = field(default_factory=dict)
    """Every tenant with a quota -> its bytes over the whole cluster."""

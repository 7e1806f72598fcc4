"""Worker settings: one frozen dataclass, validated once at startup.

Every field carries its own docstring (kopf's configuration style). The CLI
(``pipecache worker``) and tests build it with keywords; sizes left as None are
resolved against the machine when the store is created (``store_config``),
not at import or validation time, because measuring free disk is I/O.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..client.ufs.base import UnderStoreTimeouts
from ..tiering.budget import default_memory_bytes, default_ssd_bytes
from ..tiering.eviction import EVICTION_POLICY
from ..tiering.store import StoreConfig

BLOCKS_SUBDIR = "blocks"
"""The SSD tier's folder inside ``data_dir``."""
WORKER_ID_FILE = "worker.id"
"""The file inside ``data_dir`` that keeps a generated worker id across restarts."""
MAX_WORKER_ID = 128


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerSettings:
    """Everything a worker needs to run; ``validate()`` before use."""

    master: str
    """Base URL of the master, e.g. ``http://127.0.0.1:9000``."""

    host: str = "127.0.0.1"
    """Address to listen on."""

    port: int = 9100
    """TCP port to listen on."""

    advertise: str | None = None
    """Base URL that clients and the master use to reach this worker
    (default ``http://HOST:PORT``; set it when listening on 0.0.0.0 or behind NAT)."""

    worker_id: str | None = None
    """Stable identity of this worker. None: read ``data_dir/worker.id``, or
    generate one there on first start, so a restart keeps its identity."""

    data_dir: str = "./.pipecache/worker"
    """Folder of the SSD tier (``data_dir/blocks``) and of the ``worker.id`` file."""

    memory_bytes: int | None = None
    """Memory tier budget in bytes. None: a quarter of available memory."""

    ssd_bytes: int | None = None
    """SSD tier budget in bytes. None: 80% of the free disk at ``data_dir``; 0: no SSD tier."""

    policy: str = "lru"
    """Eviction policy of both tiers (``lru`` or ``lrfu``)."""

    promote_on_hit: bool = True
    """Copy an SSD-served block into memory after the response (in the background)."""

    fsync: bool = False
    """fsync SSD block files; off by default because the under-store holds the truth."""

    ufs_concurrency: int = 32
    """Most under-store reads in flight at once (misses beyond wait their turn)."""

    ufs_read_timeout: float = 3.0
    """Seconds a miss's under-store read may go without a byte (before the headers or
    mid-body) before it is abandoned and tried again. Short, as AWS advises for S3
    reads: with ``ufs_attempts`` it ends a miss whose body stalls before the 10 s after
    which a client asks the next worker (``ClientOptions.stall_timeout``)."""

    ufs_attempts: int = 3
    """Attempts per under-store read, the first included (retries back off from 0.1 s);
    then the miss is answered 502 UnderStoreError, which the gateway passes on as 503."""

    io_threads: int = 4
    """Threads of the worker's own executor for store I/O (SSD reads, writes, demotions)."""

    sendfile: bool = True
    """Serve SSD blocks with ``loop.sendfile`` (zero-copy). False: chunked reads (for tests
    and for file systems where sendfile misbehaves). Loops without sendfile (uvloop) fall
    back to chunked reads by themselves."""

    master_timeout: float = 10.0
    """Seconds a registration or heartbeat request to the master may take."""

    retry_max: float = 5.0
    """Longest pause, in seconds, between registration attempts (backoff from 0.1 s)."""

    ready_timeout: float = 5.0
    """Seconds a miss waits for the first registration (which names the under-store)
    before it is answered 503 ServiceUnavailable."""

    @property
    def advertise_url(self) -> str:
        """The URL the worker registers with: ``advertise``, or http://host:port."""
        if self.advertise:
            return self.advertise.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def ssd_dir(self) -> str | None:
        """The SSD tier's folder, or None when the SSD tier is off."""
        return None if self.ssd_bytes == 0 else os.path.join(self.data_dir, BLOCKS_SUBDIR)

    def validate(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        _check_url("master", self.master)
        if self.advertise is not None:
            _check_url("advertise", self.advertise)
        if not self.host:
            raise ValueError("host must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if self.worker_id is not None and not _valid_worker_id(self.worker_id):
            raise ValueError(
                f"worker_id must be 1..{MAX_WORKER_ID} printable characters without spaces, "
                f"got {self.worker_id!r}"
            )
        if not self.data_dir:
            raise ValueError("data_dir must not be empty")
        for name in ("memory_bytes", "ssd_bytes"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 (or None for the default), got {value}")
        if self.policy not in EVICTION_POLICY:
            known = ", ".join(sorted(EVICTION_POLICY))
            raise ValueError(f"policy must be one of {known}, got {self.policy!r}")
        for name in ("ufs_concurrency", "io_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.ufs_timeouts().validate()
        for name in ("master_timeout", "retry_max", "ready_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    def ufs_timeouts(self) -> UnderStoreTimeouts:
        """Timeouts and attempts of the under-store reads that serve misses."""
        return UnderStoreTimeouts(read=self.ufs_read_timeout, attempts=self.ufs_attempts)

    def store_config(self) -> StoreConfig:
        """The tiered store's configuration, with default budgets measured now.

        Blocking (measures free memory and disk): call it in an executor.
        """
        memory = default_memory_bytes() if self.memory_bytes is None else self.memory_bytes
        ssd = self.ssd_bytes
        if ssd is None:
            ssd = default_ssd_bytes(os.path.join(self.data_dir, BLOCKS_SUBDIR))
        return StoreConfig(
            memory_bytes=memory,
            ssd_dir=os.path.join(self.data_dir, BLOCKS_SUBDIR) if ssd > 0 else None,
            ssd_bytes=ssd,
            policy=self.policy,
            promote_on_hit=self.promote_on_hit,
            fsync=self.fsync,
        )

    def resolve_worker_id(self) -> str:
        """The configured id, else the one in ``data_dir/worker.id`` (created if missing).

        Blocking (file I/O). A generated id is a short uuid4 hex, written
        atomically (temporary file, then rename), so a crash never leaves an
        empty id file behind.
        """
        if self.worker_id is not None:
            return self.worker_id
        path = os.path.join(self.data_dir, WORKER_ID_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                stored = f.read().strip()
        except FileNotFoundError:
            stored = ""
        if stored:
            if not _valid_worker_id(stored):
                raise ValueError(f"{path} holds a malformed worker id {stored[:40]!r}")
            return stored
        new = uuid.uuid4().hex[:12]
        os.makedirs(self.data_dir, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(new + "\n")
        os.replace(tmp, path)
        return new


def _check_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http(s) URL like http://127.0.0.1:9000, got {value!r}")
    try:
        parts.port  # noqa: B018 (raises ValueError on a malformed port)
    except ValueError:
        raise ValueError(f"{name} has a malformed port: {value!r}") from None


def _valid_worker_id(value: str) -> bool:
    return 0 < len(value) <= MAX_WORKER_ID and value.isprintable() and not any(
        c.isspace() for c in value
    )

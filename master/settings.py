"""Master settings: one frozen dataclass, validated once at startup.

Every field carries its own docstring (kopf's configuration style); the Helm
chart and ``pipecache master`` feed them through ``from_env`` or keywords.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..client.consistency import Consistency, from_ttl, parse_consistency
from ..client.ufs.base import UnderStoreTimeouts
from ..tiering.blocks import DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE

ENV_PREFIX = "PIPECACHE_MASTER_"
UFS_SCHEMES = ("file", "http", "https", "s3")


@dataclass(frozen=True, kw_only=True, slots=True)
class MasterSettings:
    """Everything the master needs to run; ``validate()`` before use."""

    ufs: str
    """Under-store URI: ``file:///path`` (sub-folders are buckets), ``http(s)://host:port``
    (an S3 endpoint) or ``s3://``. Sent to workers in their registration reply."""

    host: str = "127.0.0.1"
    """Address to listen on."""

    port: int = 9000
    """TCP port to listen on (0: any free port)."""

    block_size: int = DEFAULT_BLOCK_SIZE
    """Block size, in bytes, assigned to every object the master describes."""

    heartbeat_interval: float = 1.0
    """Seconds between worker heartbeats (told to workers) and between liveness sweeps."""

    worker_timeout: float = 10.0
    """Seconds of silence after which a worker and all its block locations are dropped."""

    metadata_ttl: float = 60.0
    """Seconds object metadata is trusted before the under-store is asked again (0: never cache)."""

    consistency: str = ""
    """Consistency mode of the under-store: ``immutable``, ``ttl=SECONDS`` or ``always``
    (see ``client.consistency``). Empty: ``ttl=metadata_ttl``. When set, it replaces
    ``metadata_ttl``; gateways read it from the master's config."""

    metadata_max_entries: int = 1_000_000
    """Most objects whose metadata is cached; the oldest entries are evicted first."""

    load_window: int = 1024
    """Most load-job blocks sent to one worker and not yet reported resident."""

    load_window_bytes: int = 512 * 1024 * 1024
    """Most load-job bytes sent to one worker and not yet reported resident."""

    data_dir: str | None = None
    """Folder of the journal that keeps load jobs across restarts (None: kept in memory only)."""

    ufs_read_timeout: float = 10.0
    """Seconds a HEAD or LIST to the under-store may go without a byte before it is tried
    again. With ``ufs_attempts`` it keeps a stalled under-store's answer (503) well
    inside the 60 s a gateway waits for the master."""

    ufs_attempts: int = 3
    """Attempts per under-store request, the first included (retries back off)."""

    def validate(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        scheme = urlsplit(self.ufs).scheme
        if not self.ufs or scheme not in UFS_SCHEMES or "://" not in self.ufs:
            raise ValueError(
                f"ufs must be a URI with scheme {', '.join(UFS_SCHEMES)} "
                f"(e.g. file:///data or http://127.0.0.1:9001), got {self.ufs!r}"
            )
        if not self.host:
            raise ValueError("host must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if not MIN_BLOCK_SIZE <= self.block_size <= MAX_BLOCK_SIZE:
            raise ValueError(
                f"block_size must be {MIN_BLOCK_SIZE}..{MAX_BLOCK_SIZE} bytes, "
                f"got {self.block_size}"
            )
        if not self.heartbeat_interval > 0:
            raise ValueError(f"heartbeat_interval must be > 0, got {self.heartbeat_interval}")
        if not self.worker_timeout > self.heartbeat_interval:
            # A timeout at or under the interval drops healthy workers between two beats.
            raise ValueError(
                f"worker_timeout ({self.worker_timeout}) must be greater than "
                f"heartbeat_interval ({self.heartbeat_interval})"
            )
        if not self.metadata_ttl >= 0:
            raise ValueError(f"metadata_ttl must be >= 0, got {self.metadata_ttl}")
        self.consistency_mode()
        if self.load_window <= 0 or self.load_window_bytes <= 0:
            raise ValueError("load_window and load_window_bytes must be > 0")
        if self.data_dir is not None and not self.data_dir:
            raise ValueError("data_dir must be a folder path (or None for no journal)")
        if self.metadata_max_entries < 0:
            raise ValueError(f"metadata_max_entries must be >= 0, got {self.metadata_max_entries}")
        self.ufs_timeouts().validate()

    def ufs_timeouts(self) -> UnderStoreTimeouts:
        """Timeouts and attempts of the master's own under-store requests."""
        return UnderStoreTimeouts(read=self.ufs_read_timeout, attempts=self.ufs_attempts)

    def consistency_mode(self) -> Consistency:
        """The mode in force (ValueError if ``consistency`` does not parse)."""
        return parse_consistency(self.consistency) if self.consistency else from_ttl(self.metadata_ttl)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> MasterSettings:
        """Build settings from ``PIPECACHE_MASTER_<FIELD>`` variables, then ``overrides``.

        The under-store may also come from ``PIPECACHE_UFS`` (shared with the CLI).
        A value that does not parse raises ValueError naming the variable.
        """
        env = os.environ if environ is None else environ
        kwargs: dict[str, Any] = {}
        ufs = env.get(ENV_PREFIX + "UFS", env.get("PIPECACHE_UFS"))
        if ufs is not None:
            kwargs["ufs"] = ufs
        for f in dataclasses.fields(cls):
            name = ENV_PREFIX + f.name.upper()
            if f.name == "ufs" or name not in env:
                continue
            kwargs[f.name] = _parse(name, env[name], _PARSERS[f.name])
        kwargs.update(overrides)
        if "ufs" not in kwargs:
            raise ValueError(f"{ENV_PREFIX}UFS (or PIPECACHE_UFS) must be set")
        return cls(**kwargs)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "host": str,
    "port": int,
    "block_size": int,
    "heartbeat_interval": float,
    "worker_timeout": float,
    "metadata_ttl": float,
    "consistency": str,
    "metadata_max_entries": int,
    "load_window": int,
    "load_window_bytes": int,
    "data_dir": lambda raw: raw or None,  # an empty variable means no journal
    "ufs_read_timeout": float,
    "ufs_attempts": int,
}


def _parse(name: str, raw: str, parser: Callable[[str], Any]) -> Any:
    try:
        return parser(raw.strip())
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {parser.__name__}") from None

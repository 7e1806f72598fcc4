"""Gateway settings, validated once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from ..client.connguard import ConnectionLimits
from ..client.ufs import UnderStoreTimeouts
from .idle import DEFAULT_BODY_TIMEOUT
from .s3.hosts import parse_domain
from .tenants import Tenants, TenantsError, parse_tenants

SDK_READ_TIMEOUT = 60.0
"""Seconds boto3, the AWS CLI and most S3 SDKs wait for a byte of an answer by default."""


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    master: str
    """URL of the master."""
    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = 8080
    """Port to listen on."""
    access_key: str | None = None
    """The SigV4 access key id clients sign with (without a tenants file)."""
    secret_key: str | None = None
    """The secret of ``access_key``."""
    tenants_file: str | None = None
    """YAML file of tenants, their keys and grants (replaces ``access_key``/``secret_key``)."""
    domains: tuple[str, ...] = ()
    """Base domains of virtual-host addressing: ``bucket.<domain>`` names a bucket."""
    region: str = "us-east-1"
    """Region reported by GetBucketLocation (signatures for any region are accepted)."""
    anonymous: bool = False
    """Accept unsigned requests and skip authentication entirely (trusted networks only)."""
    read_ahead: int = 4
    """Blocks fetched ahead of a streaming reader (memory bound: read_ahead x block size per stream)."""
    metadata_ttl: float = 2.0
    """Most seconds the gateway reuses object metadata before asking the master again
    (lowered to the master's consistency mode: 0 with ``always``, its TTL if shorter)."""
    header_timeout: float = 10.0
    """Seconds a request head may take from its first byte (or from the connection's
    opening) to its end; a slower client is closed (slowloris)."""
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    """Seconds a request body may go without a byte; a slower client gets RequestTimeout
    (400) and its connection is closed, and nothing of its upload is kept."""
    max_connections: int = 512
    """Most client connections open at once; more are answered 503 SlowDown. Below the
    usual 1024 file descriptors, with room for the pool towards the workers: raise it
    together with ``ulimit -n``."""

    ufs_write_timeout: float = 15.0
    """Seconds a write (or any other call the gateway makes itself) to the under-store may
    go without a byte before it is tried again. Three 15 s attempts and botocore's
    backoff between them (at most 1 + 2 s) end before the 60 s an S3 SDK waits for an
    answer by default, so the client hears a 503 it retries rather than timing out on a
    request the gateway still holds. Idle time, not a whole transfer: a slow but moving
    upload is never cut."""
    ufs_write_attempts: int = 3
    """Attempts per under-store write before the client gets 503 ServiceUnavailable."""
    lean_blocks: bool = True
    """Read blocks from workers with the lean client (``ClientOptions.lean_blocks``)."""

    def ufs_write_outlasts_sdks(self) -> bool:
        """Can a write to a silent under-store outlast the 60 s an S3 SDK waits by default?
        (Then the SDK gives up and retries first, while the gateway still holds the write.)"""
        return self.ufs_timeouts().silent_for() >= SDK_READ_TIMEOUT

    def ufs_timeouts(self) -> UnderStoreTimeouts:
        """Timeouts of the gateway's own under-store calls (writes, multipart, listings of uploads)."""
        return UnderStoreTimeouts(read=self.ufs_write_timeout, attempts=self.ufs_write_attempts)

    def limits(self) -> ConnectionLimits:
        """The listening socket's guards."""
        return ConnectionLimits(header_timeout=self.header_timeout, max_connections=self.max_connections)

    def validate(self) -> None:
        if not self.master.startswith(("http://", "https://")):
            raise ValueError(f"--master must be an http(s) URL, not {self.master!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"--port {self.port} is not a TCP port")
        if self.tenants_file is not None:
            if self.anonymous:
                raise ValueError("--anonymous and --tenants exclude each other")
            self.tenants()
        elif not self.anonymous and not (self.access_key and self.secret_key):
            raise ValueError(
                "set both --access-key and --secret-key (or PIPECACHE_ACCESS_KEY and "
                "PIPECACHE_SECRET_KEY), give a --tenants file, or pass --anonymous to accept "
                "unsigned requests"
            )
        for d in self.domains:
            parse_domain(d)
        if self.read_ahead < 1:
            raise ValueError("read_ahead must be at least 1")
        self.limits().validate()
        self.ufs_timeouts().validate()
        if not self.body_timeout > 0:
            raise ValueError(f"body timeout must be > 0, got {self.body_timeout}")

    def tenants(self) -> Tenants:
        """The tenants file's tenants, else the single key pair with access to everything."""
        if self.tenants_file is not None:
            try:
                with open(self.tenants_file, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise TenantsError(f"cannot read tenants file {self.tenants_file}: {exc}") from None
            return parse_tenants(text, self.tenants_file)
        if self.access_key and self.secret_key:
            return Tenants.single(self.access_key, self.secret_key)
        return Tenants(())

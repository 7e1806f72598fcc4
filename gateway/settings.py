"""Gateway settings, validated once at start-up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    master: str
    """URL of the master."""
    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = 8080
    """Port to listen on."""
    access_key: str | None = None
    """The SigV4 access key id clients sign with."""
    secret_key: str | None = None
    """The secret of ``access_key``."""
    region: str = "us-east-1"
    """Region reported by GetBucketLocation (signatures for any region are accepted)."""
    anonymous: bool = False
    """Accept unsigned requests and skip authentication entirely (trusted networks only)."""
    read_ahead: int = 4
    """Blocks fetched ahead of a streaming reader (memory bound: read_ahead x block size per stream)."""
    metadata_ttl: float = 2.0
    """Seconds the gateway reuses object metadata before asking the master again."""

    def validate(self) -> None:
        if not self.master.startswith(("http://", "https://")):
            raise ValueError(f"--master must be an http(s) URL, not {self.master!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"--port {self.port} is not a TCP port")
        if not self.anonymous and not (self.access_key and self.secret_key):
            raise ValueError(
                "set both --access-key and --secret-key (or PIPECACHE_ACCESS_KEY and "
                "PIPECACHE_SECRET_KEY), or pass --anonymous to accept unsigned requests"
            )
        if self.read_ahead < 1:
            raise ValueError("read_ahead must be at least 1")

    def credentials(self) -> dict[str, str]:
        if self.access_key and self.secret_key:
            return {self.access_key: self.secret_key}
        return {}

"""The S3-compatible gateway in front of the cache."""

from .app import make_app
from .settings import GatewaySettings

__all__ = ["GatewaySettings", "make_app"]

"""The pipecache worker: serves blocks from memory, SSD or the under-store."""

from .app import make_app
from .settings import WorkerSettings

__all__ = ["WorkerSettings", "make_app"]

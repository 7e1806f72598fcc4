"""The pipecache worker: serves blocks from memory, SSD or the under-store."""

from .app import WORKER_ID, make_app
from .local import LocalReader
from .settings import WorkerSettings

__all__ = ["WORKER_ID", "LocalReader", "WorkerSettings", "make_app"]

"""The pipecache master: worker registry, block locations and object metadata.

It never carries bytes: clients place blocks with rendezvous hashing over the
worker list and read them from workers; the master is the source of truth for
where blocks are.
"""

from .app import make_app
from .settings import MasterSettings

__all__ = ["MasterSettings", "make_app"]

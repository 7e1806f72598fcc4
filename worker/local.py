"""The worker's blocks for an S3 endpoint in the same process (``client.LocalBlocks``).

A gateway that runs inside a worker reads the blocks placement gives to that
worker straight from its store: a memory-tier block is a view of the stored
bytes (no socket, no copy before the client's socket), an SSD block a view
of the mapped file (``SsdHandle.view``), a miss the same single-flight under-store fetch a block request
makes. Blocks of other workers still go over HTTP.
"""

from __future__ import annotations

from aiohttp import web

from ..client.client import Chunks
from ..client.protocol import BlockRef
from ..tiering.errors import NoWorkers
from .blocks import BlockService
from .handlers import SERVICE


class LocalReader:
    """Reads blocks of the worker app ``app`` (usable once its cleanup context has run)."""

    def __init__(self, app: web.Application, worker_id_key: web.AppKey[str]) -> None:
        self._app = app
        self._id_key = worker_id_key

    @property
    def worker_id(self) -> str | None:
        return self._app.get(self._id_key)

    def _service(self) -> BlockService:
        svc = self._app.get(SERVICE)
        if svc is None:
            raise NoWorkers("the local worker is still starting")
        return svc

    async def read_span(self, ref: BlockRef, start: int, end: int) -> Chunks:
        svc = self._service()
        bid = ref.block_id()
        found = await svc.find(bid, ref)
        svc.metrics.served(found.tier, end - start, bid)
        if found.handle is None:
            return [found.view[start:end]]
        handle = found.handle
        try:
            return [handle.view(start, end)]
        finally:
            handle.close()
            svc.promote_later(bid, handle.length)

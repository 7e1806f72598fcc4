"""What the watcher needs from the master (:class:`Preloader`), and its adapter over the Client.

The watcher only starts, follows and cancels load jobs and manages protect holds. Keeping that
to a small Protocol keeps the service independent of the rest of the client's surface.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..client import Client, JobInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobStatus:
    """A load job's state as the watcher needs it."""

    state: str
    finished: bool
    detail: str = ""
    blocks_total: int = 0
    blocks_resident: int = 0


class Preloader(Protocol):
    """The master operations the watcher uses."""

    async def load(self, uris: Sequence[str], *, priority: int, hold: str | None) -> str:
        """Start a load job; its id."""

    async def status(self, job_id: str) -> JobStatus:
        """The job's current state."""

    async def cancel(self, job_id: str) -> None:
        """Stop the job."""

    async def protect(self, hold: str, uris: Sequence[str]) -> bool:
        """Keep the data under ``uris`` from eviction under ``hold``; False if unsupported."""

    async def release(self, hold: str, *, evict_first: bool) -> bool:
        """Release ``hold``; False if unsupported."""


def load_path(uri: str) -> str:
    """The master's load path of a watcher URI (``minio://`` buckets are S3 buckets to it)."""
    return "s3://" + uri.split("://", 1)[1] if uri.startswith("minio://") else uri


def describe(info: JobInfo) -> str:
    """A short account of a finished job for an Event."""
    parts = [f"{info.objects_done}/{info.objects_total} objects", f"{info.bytes_done} bytes"]
    if info.created and info.updated >= info.created:
        parts.append(f"{info.updated - info.created:.1f}s")
    if info.failed:
        parts.append("failed: " + ", ".join(f"{f.bucket}/{f.key}" for f in info.failed[:3]))
    if info.reason:
        parts.append(info.reason)
    return ", ".join(parts)


class ClientPreloader:
    """:class:`Preloader` over :class:`pipecache.client.Client`.

    Protection needs the master's protect holds (``Client.protect``/``release`` and
    ``load(hold=)``); against a client without them the watcher still preloads, and says once
    in the log that nothing is protected from eviction.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self._jobs: dict[str, Any] = {}
        self._load_takes_hold = "hold" in inspect.signature(client.load).parameters
        self.protects = callable(getattr(client, "protect", None)) and callable(
            getattr(client, "release", None)
        )
        if not (self.protects and self._load_takes_hold):
            log.warning(
                "this pipecache client has no protect holds: preloaded data is not protected "
                "from eviction until the steps that need it have run"
            )

    async def load(self, uris: Sequence[str], *, priority: int, hold: str | None) -> str:
        paths = [load_path(u) for u in uris]
        kw: dict[str, Any] = {"priority": priority}
        if hold is not None and self._load_takes_hold:
            kw["hold"] = hold
        job = await self.client.load(*paths, **kw)
        self._jobs[job.id] = job
        return job.id

    async def status(self, job_id: str) -> JobStatus:
        job = self._jobs.get(job_id) or self.client.job(job_id)
        info = await job.info()
        if info.finished:
            self._jobs.pop(job_id, None)
        detail = describe(info) if info.finished else ""
        return JobStatus(info.state, info.finished, detail, info.blocks_total, info.blocks_resident)

    async def cancel(self, job_id: str) -> None:
        job = self._jobs.pop(job_id, None) or self.client.job(job_id)
        await job.cancel()

    async def protect(self, hold: str, uris: Sequence[str]) -> bool:
        if not self.protects:
            return False
        await self.client.protect(hold, [load_path(u) for u in uris])  # type: ignore[attr-defined]
        return True

    async def release(self, hold: str, *, evict_first: bool) -> bool:
        if not self.protects:
            return False
        await self.client.release(hold, evict_first=evict_first)  # type: ignore[attr-defined]
        return True

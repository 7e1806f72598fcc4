"""What the watcher needs from the master (:class:`Preloader`), and its adapter over the Client.

The watcher only starts, follows and cancels load jobs, manages protect holds and reads their
read counts. Keeping that
to a small Protocol keeps the service independent of the rest of the client's surface (and
lets the scheduler's decisions be carried out against anything that offers these six calls).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..client import Client, Job, JobInfo, NoSuchHold
from .hits import Reads

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
        """Keep the data under ``uris`` from eviction under ``hold`` (created if needed)."""

    async def release(self, hold: str, *, evict_first: bool) -> bool:
        """Release ``hold``; False if there was no such hold."""

    async def hold_reads(self) -> dict[str, Reads]:
        """Every hold's reads and hits so far, by hold name."""


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
    """:class:`Preloader` over :class:`pipecache.client.Client` and the master's protect holds."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._jobs: dict[str, Job] = {}

    async def load(self, uris: Sequence[str], *, priority: int, hold: str | None) -> str:
        job = await self.client.load([load_path(u) for u in uris], priority=priority, hold=hold or "")
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
        await self.client.protect(hold, [load_path(u) for u in uris])
        return True

    async def release(self, hold: str, *, evict_first: bool) -> bool:
        try:
            await self.client.release(hold, evict_first=evict_first)
        except NoSuchHold:
            # Gone already (the master restarted, or an admin released it): nothing to do.
            log.info("hold %s was already released", hold)
            return False
        return True

    async def hold_reads(self) -> dict[str, Reads]:
        return {h.name: Reads(h.reads, h.hits) for h in await self.client.holds() if h.kind == "protect"}

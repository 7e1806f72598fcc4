"""Handles on the master's load jobs: progress, waiting, cancelling.

    job = await pc.load("s3://datasets/imagenet/train/", priority=1)
    async for info in job.progress(interval=0.5):
        print(f"{info.fraction:.0%}")
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from . import protocol as p
from .rpc import call

if TYPE_CHECKING:
    from .client import Client


class Job:
    """A load job on the master. ``last`` is the latest :class:`JobInfo` seen."""

    def __init__(self, client: Client, info: p.JobInfo) -> None:
        self._client = client
        self.id = info.id
        self.last = info

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.last.state}>"

    async def info(self, *, timeout: float | None = None) -> p.JobInfo:
        """The job's current state and progress."""
        self.last = await self._rpc(p.JOB_GET, timeout)
        return self.last

    async def cancel(self, *, timeout: float | None = None) -> p.JobInfo:
        """Stop dispatching the job's blocks (a finished job stays as it is)."""
        self.last = await self._rpc(p.JOB_CANCEL, timeout)
        return self.last

    async def progress(self, interval: float = 0.5) -> AsyncIterator[p.JobInfo]:
        """Yield the job's info every ``interval`` seconds; the last one yielded is final
        (done, failed or cancelled)."""
        while True:
            info = await self.info()
            yield info
            if info.finished:
                return
            await asyncio.sleep(interval)

    async def wait(self, *, interval: float = 0.5, timeout: float | None = None) -> p.JobInfo:
        """The final info once the job is done, failed or cancelled (check ``state``).

        TimeoutError after ``timeout`` seconds (the job goes on).
        """

        async def last() -> p.JobInfo:
            info = self.last
            async for info in self.progress(interval):  # noqa: B007 - the last one is wanted
                pass
            return info

        return await asyncio.wait_for(last(), timeout)

    async def _rpc(self, route: str, timeout: float | None) -> p.JobInfo:
        c = self._client
        return await call(
            c.session, c.master + route, p.JobInfo, p.JobRequest(self.id), timeout=c._t(timeout)
        )

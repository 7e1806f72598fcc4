"""Single flight: concurrent calls for one key share one execution.

The first caller for a key starts the work as a task; callers arriving while
it runs await the same task. Each caller awaits it through
``asyncio.shield``, so a caller that goes away (a client disconnecting
cancels its handler) never cancels the work the others wait for. The work's
result or error reaches every caller; nothing is remembered once it finishes,
so an error is not cached: the next call starts afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Deduplicate concurrent async work by key."""

    def __init__(self, name: str = "singleflight") -> None:
        self._name = name
        self._tasks: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        """Keys with work in flight."""
        return len(self._tasks)

    def __contains__(self, key: object) -> bool:
        return key in self._tasks

    def keys(self) -> list[K]:
        """The keys with work in flight (a copy)."""
        return list(self._tasks)

    def forget(self, key: K) -> None:
        """Let the next call for ``key`` start afresh instead of joining the run in flight
        (which goes on for those already waiting)."""
        self._tasks.pop(key, None)

    async def do(self, key: K, work: Callable[[], Coroutine[Any, Any, V]]) -> V:
        """Return the result of ``work()``, sharing a run already in flight for ``key``.

        ``work`` is called only when no run for ``key`` is in flight.
        Cancelling this call does not cancel the shared run.
        """
        task = self._tasks.get(key)
        if task is None or task.done():
            task = asyncio.create_task(work(), name=f"{self._name}:{key}")
            self._tasks[key] = task
            task.add_done_callback(lambda t: self._finished(key, t))
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        # Every waiter may have left: retrieve the error so asyncio does not
        # log "exception was never retrieved" for a failure someone else saw.
        if not task.cancelled() and task.exception() is not None:
            log.debug("%s for %r failed: %r", self._name, key, task.exception())

    async def close(self) -> None:
        """Cancel every run in flight and wait for them to end (at shutdown)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

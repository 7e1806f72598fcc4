"""Request bodies read under an idle deadline (``gateway.idle``)."""

from __future__ import annotations

import asyncio
import time

import pytest
from pipecache.gateway.idle import idle_bounded
from pipecache.gateway.s3 import errors as s3e


def _sender(gaps: list[float]) -> tuple[asyncio.Queue[bytes], asyncio.Task[None]]:
    """A queue fed one chunk after each gap (then the end, b"")."""
    q: asyncio.Queue[bytes] = asyncio.Queue()

    async def feed() -> None:
        for i, gap in enumerate(gaps):
            await asyncio.sleep(gap)
            q.put_nowait(b"x%d" % i)
        q.put_nowait(b"")

    return q, asyncio.create_task(feed())


async def _collect(q: asyncio.Queue[bytes], timeout: float, pause: float = 0.0) -> list[bytes]:
    out = []
    async for chunk in idle_bounded(q.get, timeout):
        out.append(chunk)
        await asyncio.sleep(pause)
    return out


def test_a_steady_body_passes_whole_however_long_it_takes() -> None:
    async def main() -> None:
        q, task = _sender([0.05] * 8)  # 0.4 s in all, never 0.2 s quiet
        assert await _collect(q, 0.2) == [b"x%d" % i for i in range(8)]
        await task

    asyncio.run(main())


def test_a_stalled_body_raises_request_timeout_after_the_idle_time() -> None:
    async def main() -> None:
        q, task = _sender([0.01, 0.01, 30.0])
        t0 = time.monotonic()
        with pytest.raises(s3e.RequestTimeout) as err:
            await _collect(q, 0.2)
        assert 0.2 <= time.monotonic() - t0 < 1.5
        assert err.value.status == 400 and "Idle connections will be closed" in err.value.message
        task.cancel()

    asyncio.run(main())


def test_a_slow_consumer_is_not_the_senders_fault() -> None:
    async def main() -> None:
        q, task = _sender([0.0] * 4)  # everything arrives at once, then the end
        # Each chunk is held 0.3 s by the consumer, over the 0.2 s deadline: no timeout.
        assert len(await _collect(q, 0.2, pause=0.3)) == 4
        await task

    asyncio.run(main())

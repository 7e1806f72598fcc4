"""SingleFlight: one run per key at a time, shared result, errors not cached."""

from __future__ import annotations

import asyncio

import pytest
from pipecache.client.singleflight import SingleFlight


async def test_concurrent_calls_share_one_run() -> None:
    sf: SingleFlight[str, bytes] = SingleFlight()
    runs = 0
    gate = asyncio.Event()

    async def work() -> bytes:
        nonlocal runs
        runs += 1
        await gate.wait()
        return b"data"

    callers = [asyncio.create_task(sf.do("k", work)) for _ in range(20)]
    await asyncio.sleep(0)
    assert "k" in sf and len(sf) == 1
    gate.set()
    assert await asyncio.gather(*callers) == [b"data"] * 20
    assert runs == 1
    await asyncio.sleep(0)
    assert len(sf) == 0


async def test_distinct_keys_run_separately() -> None:
    sf: SingleFlight[int, int] = SingleFlight()
    seen: list[int] = []

    async def work(n: int) -> int:
        seen.append(n)
        await asyncio.sleep(0)
        return n * 2

    results = await asyncio.gather(*(sf.do(n % 3, lambda n=n: work(n % 3)) for n in range(9)))
    assert sorted(seen) == [0, 1, 2]
    assert results == [(n % 3) * 2 for n in range(9)]


async def test_error_reaches_every_waiter_and_is_not_cached() -> None:
    sf: SingleFlight[str, str] = SingleFlight()
    runs = 0
    gate = asyncio.Event()

    async def failing() -> str:
        nonlocal runs
        runs += 1
        await gate.wait()
        raise ValueError("boom")

    callers = [asyncio.create_task(sf.do("k", failing)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    assert runs == 1

    async def ok() -> str:
        return "fine"

    assert await sf.do("k", ok) == "fine"  # the failure was forgotten


async def test_a_cancelled_waiter_does_not_cancel_the_run() -> None:
    sf: SingleFlight[str, str] = SingleFlight()
    gate = asyncio.Event()
    finished = False

    async def work() -> str:
        nonlocal finished
        await gate.wait()
        finished = True
        return "v"

    first = asyncio.create_task(sf.do("k", work))
    second = asyncio.create_task(sf.do("k", work))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.set()
    assert await second == "v"
    assert finished


async def test_the_run_finishes_even_when_every_waiter_left() -> None:
    sf: SingleFlight[str, str] = SingleFlight()
    done = asyncio.Event()

    async def work() -> str:
        await asyncio.sleep(0.01)
        done.set()
        raise RuntimeError("nobody is listening")  # must not be logged as "never retrieved"

    caller = asyncio.create_task(sf.do("k", work))
    await asyncio.sleep(0)
    caller.cancel()
    await asyncio.wait_for(done.wait(), 1)
    await asyncio.sleep(0.01)
    assert len(sf) == 0


async def test_close_cancels_runs_in_flight() -> None:
    sf: SingleFlight[str, str] = SingleFlight()
    started = asyncio.Event()

    async def forever() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    caller = asyncio.create_task(sf.do("k", forever))
    await started.wait()
    await sf.close()
    with pytest.raises(asyncio.CancelledError):
        await caller

"""SingleFlight: one shared task per key, safe against callers giving up."""

from __future__ import annotations

import asyncio

import pytest
from pipecache.client.singleflight import SingleFlight


async def test_callers_share_one_run_and_one_leaving_does_not_cancel_it() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    gate, runs = asyncio.Event(), []

    async def fetch() -> int:
        runs.append(1)
        await gate.wait()
        return 42

    a = asyncio.create_task(flights.do("k", fetch))
    b = asyncio.create_task(flights.do("k", fetch))
    await asyncio.sleep(0)
    a.cancel()
    gate.set()
    assert await b == 42
    assert a.cancelled() and runs == [1] and len(flights) == 0


async def test_errors_reach_every_caller_and_the_key_is_retried() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    calls = 0

    async def fail() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise KeyError("gone")

    results = await asyncio.gather(
        flights.do("k", fail), flights.do("k", fail), return_exceptions=True
    )
    assert [type(r) for r in results] == [KeyError, KeyError] and calls == 1
    with pytest.raises(KeyError):
        await flights.do("k", fail)
    assert calls == 2


async def test_close_cancels_running_flights() -> None:
    flights: SingleFlight[str, int] = SingleFlight()

    async def forever() -> int:
        await asyncio.Event().wait()
        return 0

    caller = asyncio.create_task(flights.do("k", forever))
    await asyncio.sleep(0)
    await flights.close()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert len(flights) == 0


async def test_forget_lets_the_next_call_start_afresh() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    gate, values = asyncio.Event(), iter([1, 2])

    async def fetch() -> int:
        await gate.wait()
        return next(values)

    first = asyncio.create_task(flights.do("k", fetch))
    await asyncio.sleep(0)
    assert flights.keys() == ["k"]
    flights.forget("k")  # e.g. an invalidation: the run in flight may have read the old version
    second = asyncio.create_task(flights.do("k", fetch))
    gate.set()
    assert (await first, await second) == (1, 2)

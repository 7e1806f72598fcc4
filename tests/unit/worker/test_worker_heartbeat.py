"""The heartbeat's pure parts: the delta buffer and the retry backoff."""

from __future__ import annotations

import pytest
from pipecache.client.backoff import backoff
from pipecache.worker.heartbeat import DeltaBuffer

A, B, C = "000000000000000a", "000000000000000b", "000000000000000c"


def test_deltas_accumulate_until_cleared() -> None:
    buf = DeltaBuffer()
    buf.merge([A], [B])
    buf.merge([C], [])
    assert buf.pending() == ([A, C], [B])
    assert len(buf) == 3
    buf.clear()
    assert buf.pending() == ([], [])


def test_last_change_wins() -> None:
    # An unacknowledged add followed by a remove is sent as a remove (harmless if
    # the master never saw the add; needed if it did and only the reply was lost).
    buf = DeltaBuffer()
    buf.merge([A], [])
    buf.merge([], [A])
    assert buf.pending() == ([], [A])
    buf.merge([A], [])
    assert buf.pending() == ([A], [])


def test_backoff_doubles_up_to_the_cap() -> None:
    top = [backoff(n, cap=5.0, rand=lambda: 1.0) for n in range(10)]
    assert top[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert max(top) == 5.0
    assert top == sorted(top)
    assert backoff(3, cap=5.0, rand=lambda: 0.0) == pytest.approx(0.4)  # jitter halves at most
    assert backoff(10_000, cap=2.0, rand=lambda: 1.0) == 2.0  # no overflow

"""How long under-store calls may take (``UnderStoreTimeouts``): pure arithmetic, no sockets."""

from __future__ import annotations

from pipecache.client.ufs import UnderStoreTimeouts
from pipecache.client.ufs.base import WRITE_MIN_RATE

MiB = 1024 * 1024


def test_backoff_between_attempts_is_capped_at_20_s() -> None:
    assert UnderStoreTimeouts(read=1.0, attempts=1).silent_for() == 1.0
    assert UnderStoreTimeouts(read=1.0, attempts=8).silent_for() == 8 + 1 + 2 + 4 + 8 + 16 + 20 + 20


def test_write_deadline_grows_with_the_body_not_below_the_silent_time() -> None:
    t = UnderStoreTimeouts(read=15.0, attempts=3)
    assert WRITE_MIN_RATE == MiB
    assert t.write_deadline(0) == t.silent_for() == 48.0
    # An 8 MiB part (the gateway's multipart size) still fails before an SDK's 60 s.
    assert t.write_deadline(8 * MiB) == 56.0
    # A 5 GiB part may take 85 minutes: only a crawl below 1 MiB/s is cut.
    assert t.write_deadline(5 * 1024 * MiB) == 48.0 + 5 * 1024

"""Gateway settings: the body deadline and the under-store write timeouts."""

from __future__ import annotations

import pytest
from pipecache.client.ufs import UnderStoreTimeouts
from pipecache.gateway.settings import GatewaySettings

MASTER = "http://127.0.0.1:9000"


def test_defaults_fail_a_silent_write_before_an_sdk_gives_up() -> None:
    s = GatewaySettings(master=MASTER, anonymous=True)
    s.validate()
    assert s.body_timeout == 60.0
    assert s.ufs_timeouts() == UnderStoreTimeouts(read=15.0, attempts=3)
    assert s.ufs_timeouts().silent_for() == 15.0 * 3 + 1 + 2  # backoffs before attempts 2 and 3
    assert not s.ufs_write_outlasts_sdks()
    assert GatewaySettings(master=MASTER, anonymous=True, ufs_write_timeout=20).ufs_write_outlasts_sdks()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"body_timeout": 0}, "body timeout"),
        ({"body_timeout": -1}, "body timeout"),
        ({"ufs_write_timeout": 0}, "read timeout"),
        ({"ufs_write_attempts": 0}, "attempts"),
        ({"ufs_write_attempts": 11}, "attempts"),
    ],
)
def test_timeouts_that_cannot_work_are_refused(kw: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GatewaySettings(master=MASTER, anonymous=True, **kw).validate()  # type: ignore[arg-type]

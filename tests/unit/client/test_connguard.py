"""The connection guards' settings, and the aiohttp internals they rely on."""

from __future__ import annotations

import pytest
from aiohttp.web_protocol import RequestHandler
from pipecache.client.connguard import BUSY, ConnectionLimits


def test_aiohttp_still_has_what_the_guard_reads() -> None:
    # connguard reads these two private attributes; an aiohttp upgrade that renames
    # them must fail here, not silently turn the header deadline off.
    slots = {s for cls in RequestHandler.__mro__ for s in getattr(cls, "__slots__", ())}
    assert {"_waiter", "_request_count"} <= slots


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (ConnectionLimits(header_timeout=0), "header timeout"),
        (ConnectionLimits(header_timeout=-1), "header timeout"),
        (ConnectionLimits(max_connections=0), "max connections"),
    ],
)
def test_limits_that_cannot_work_are_refused(limits: ConnectionLimits, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        limits.validate()


def test_defaults_are_valid() -> None:
    ConnectionLimits().validate()
    ConnectionLimits(max_connections=1).validate()


def test_busy_answer_is_a_whole_http_response() -> None:
    head, _, body = BUSY.partition(b"\r\n\r\n")
    fields = dict(h.partition(b": ")[::2] for h in head.split(b"\r\n")[1:])
    length = int(fields[b"Content-Length"])
    assert head.startswith(b"HTTP/1.1 503 ") and length == len(body) and body.endswith(b"</Error>")

"""Request bodies read under an idle deadline: a client that stops sending is let go.

aiohttp puts no clock on a request body once its head has arrived, and the
connection guard (``client/connguard.py``) only times heads. A client that
sends the headers of a PUT and then stalls would hold a connection and a
handler, and whatever under-store upload the handler started, forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from .s3 import errors as s3e

DEFAULT_BODY_TIMEOUT = 60.0
"""Seconds a request body may go without a byte (``--body-timeout``)."""


async def idle_bounded(read: Callable[[], Awaitable[bytes]], timeout: float) -> AsyncIterator[bytes]:
    """The chunks ``read()`` returns until it returns b"" (the end), each within ``timeout`` s.

    Only the wait for the sender counts: time the consumer spends between two
    reads does not (aiohttp pauses the socket then, and buffered bytes come at
    once). A wait longer than ``timeout`` raises S3's RequestTimeout; the caller's
    upload then fails before its commit, so nothing half-sent lands.
    """
    while True:
        try:
            async with asyncio.timeout(timeout):
                data = await read()
        except TimeoutError:
            raise s3e.RequestTimeout() from None
        if not data:
            return
        yield data

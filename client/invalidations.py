"""Follow the master's invalidation feed, so cached metadata may be reused for long.

While the feed answers, a client learns of every write's invalidation within a
round trip, whichever gateway made it, and may reuse metadata as long as the
consistency mode allows (a TTL's full length; ``fresh_for`` keeps each entry
within the master's own window). When the feed cannot be reached, what is
cached is cut down to the short reuse a client has without the feed (entries
are kept: with the master down they still serve ``stale_if_error`` reads), and
a feed that comes back under another epoch (a restarted master) or that lost
track of this client makes it forget everything.
"""

from __future__ import annotations

import asyncio
import logging

from ..tiering.errors import CacheError
from . import protocol as p
from .client import Client
from .consistency import Consistency
from .rpc import call

log = logging.getLogger(__name__)

POLL_WAIT = 20.0
"""Seconds the master holds a poll open with nothing to say."""


async def follow_invalidations(
    client: Client, mode: Consistency, local_max: float, *, wait: float = POLL_WAIT
) -> None:
    """Run until cancelled: apply the feed to ``client``'s metadata cache and size its reuse.

    ``local_max``: the reuse (seconds) while the feed is not followed.
    """
    since, epoch, following, delay = 0, "", False, 0.1
    fallback = mode.reuse_for(local_max)
    recheck = False
    while True:
        # After a failed poll, one quick poll (no waiting) before calling the feed lost:
        # a poll on a pooled connection the master has just closed fails once, and the
        # feed's sequence numbers mean nothing is missed in between.
        poll_wait = 0.0 if recheck else wait
        try:
            reply = await call(
                client.session,
                client.master + p.INVALIDATIONS,
                p.InvalidationsReply,
                p.InvalidationsRequest(since, epoch, poll_wait),
                timeout=poll_wait + 10.0,
            )
        except CacheError as exc:  # Unreachable included
            if following and not recheck:
                recheck = True
                continue
            recheck = False
            if following:
                log.warning("invalidation feed lost (%s): reusing metadata for %gs only", exc, fallback)
                client.cap_metadata_ttl(fallback)
                following = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        delay, recheck = 0.1, False
        if reply.reset:
            client.forget_all()
        else:
            for ev in reply.events:
                client.forget(ev.bucket, ev.key, ev.prefix)
        since, epoch = reply.seq, reply.epoch
        if not following:
            client.set_metadata_ttl(mode.metadata_ttl)
            log.info("following the invalidation feed: metadata reused for %gs", mode.metadata_ttl)
            following = True

"""The invalidation feed: a numbered log of metadata invalidations that gateways follow.

A gateway that hears of every write's invalidation at once may reuse object
metadata for as long as the consistency mode allows, instead of a couple of
seconds, and still read its own and other gateways' writes. Pure: the long
poll that serves it lives in the app.

Positions are numbered within an *epoch*, a random name drawn when the master
starts. A follower of another epoch, or one so far behind that the log's
bounded window has dropped what it missed, is told to ``reset``: to forget
all it caches, which is always safe.
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque

from ..client.protocol import MAX_INVALIDATIONS, InvalidateRequest, InvalidationsReply


class InvalidationFeed:
    """The last ``capacity`` invalidations, numbered 1, 2, ... within ``epoch``."""

    def __init__(self, capacity: int = MAX_INVALIDATIONS, epoch: str | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.epoch = epoch or secrets.token_hex(8)
        self.seq = 0
        self._log: deque[InvalidateRequest] = deque(maxlen=capacity)

    def add(self, event: InvalidateRequest) -> int:
        """Append an invalidation; its position."""
        self.seq += 1
        self._log.append(event)
        return self.seq

    def since(self, seq: int, epoch: str) -> InvalidationsReply:
        """What came after position ``seq`` of ``epoch`` (a reset if that cannot be told)."""
        first = self.seq - len(self._log)  # the position just before the oldest kept event
        if epoch != self.epoch or not first <= seq <= self.seq:
            return InvalidationsReply(self.epoch, self.seq, reset=True)
        return InvalidationsReply(self.epoch, self.seq, list(itertools.islice(self._log, seq - first, None)))

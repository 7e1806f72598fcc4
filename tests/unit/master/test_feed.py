from __future__ import annotations

import pytest
from pipecache.client.protocol import InvalidateRequest, InvalidationsReply
from pipecache.master.feed import InvalidationFeed


def ev(key: str) -> InvalidateRequest:
    return InvalidateRequest("b", key)


def test_a_follower_gets_what_came_after_its_position() -> None:
    feed = InvalidationFeed(epoch="e1")
    first = feed.since(0, "")
    assert first.reset and first.seq == 0 and first.epoch == "e1"  # a new follower starts clean
    assert feed.add(ev("a")) == 1 and feed.add(ev("b")) == 2
    assert feed.since(0, "e1").events == [ev("a"), ev("b")]
    assert feed.since(1, "e1") == InvalidationsReply("e1", 2, [ev("b")])
    assert feed.since(2, "e1") == InvalidationsReply("e1", 2, [])


def test_another_epoch_or_a_lost_window_resets() -> None:
    feed = InvalidationFeed(capacity=3, epoch="e1")
    for k in "abcde":
        feed.add(ev(k))
    assert feed.since(5, "e0").reset  # the master restarted since
    assert feed.since(1, "e1").reset  # events 2 and 3 fell out of the window
    assert feed.since(2, "e1").events == [ev("c"), ev("d"), ev("e")]
    assert feed.since(6, "e1").reset  # ahead of the log: not from this feed


def test_epochs_differ_between_feeds() -> None:
    assert InvalidationFeed().epoch != InvalidationFeed().epoch


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        InvalidationFeed(capacity=0)

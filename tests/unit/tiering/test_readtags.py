"""Per-hold read counts on a worker: tags on held blocks, hits and misses per tag."""

from __future__ import annotations

import pytest
from pipecache.client.protocol import MAX_TAGS, Command, HeartbeatRequest
from pipecache.tiering.blocks import block_id
from pipecache.tiering.errors import BadRequest
from pipecache.tiering.readtags import ReadTags

IDS = [block_id("b", "k", "e", i) for i in range(6)]


def test_reads_count_for_every_tag_of_the_block() -> None:
    t = ReadTags()
    assert t.tag("run/a", IDS[:3]) == 3
    assert t.tag("run/a", IDS[2:4]) == 1  # IDS[2] had it already
    t.tag("run/b", IDS[2:3])
    t.read(IDS[0], hit=True)
    t.read(IDS[2], hit=False)  # a miss for both holds naming it
    t.read(IDS[5], hit=False)  # not held: nobody's read
    assert t.counts() == {"run/a": [2, 1], "run/b": [1, 0]}
    assert t.tags_of(IDS[2]) == ["run/a", "run/b"]
    assert len(t) == 2


def test_untag_forgets_blocks_and_counts_and_unread_tags_are_not_reported() -> None:
    t = ReadTags()
    t.tag("a", IDS[:2])
    t.tag("b", IDS[1:2])
    t.tag("c", IDS[4:5])
    t.read(IDS[1], hit=True)
    assert t.untag("a") == 2 and t.untag("a") == 0
    assert t.tags_of(IDS[0]) == [] and t.tags_of(IDS[1]) == ["b"]
    t.read(IDS[0], hit=True)
    assert t.counts() == {"b": [1, 1]}  # c was never read
    assert t.counts(limit=0) == {}
    t.clear()
    t.read(IDS[1], hit=True)
    assert t.counts() == {} and len(t) == 0


def test_tag_reads_and_tags_travel_only_when_set() -> None:
    assert "tag_reads" not in HeartbeatRequest("w").to_wire()
    beat = HeartbeatRequest("w", tag_reads={"kfp:ns/run/step": [3, 2]})
    assert HeartbeatRequest.unpack(beat.pack()).tag_reads == {"kfp:ns/run/step": [3, 2]}
    assert "tag" not in Command("pin", IDS[:1]).to_wire()
    assert Command.unpack(Command("untag", tag="x").pack()) == Command("untag", tag="x")


@pytest.mark.parametrize(
    "tag_reads",
    [
        {"a": [1, 2]},  # more hits than reads
        {"a": [-1, 0]},
        {"a": [1]},
        {"": [1, 1]},
        {"a" * 600: [1, 1]},
        {"a": "x"},
        {f"t{i}": [1, 1] for i in range(MAX_TAGS + 1)},
    ],
)
def test_hostile_tag_reads_are_refused(tag_reads: object) -> None:
    with pytest.raises(BadRequest):
        HeartbeatRequest.from_wire({"worker_id": "w", "tag_reads": tag_reads})


def test_overlong_command_tag_is_refused() -> None:
    with pytest.raises(BadRequest):
        Command.from_wire({"kind": "pin", "tag": "x" * 600})

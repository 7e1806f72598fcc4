"""The pure hold registry: keep counts, commands per worker, expiry, free, snapshots."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from pipecache.client.protocol import (
    Command,
    FreeRequest,
    HoldRequest,
    LoadRequest,
    ReleaseRequest,
    TtlRequest,
)
from pipecache.master.holds import HoldRegistry
from pipecache.tiering.blocks import block_id
from pipecache.tiering.errors import BadRequest, NoSuchHold

IDS = [block_id("b", "k", "e", i) for i in range(10)]


class Map:
    """A tiny block map standing in for ``ClusterState.locate`` (it is a pure function too)."""

    def __init__(self, where: dict[str, list[str]]) -> None:
        self.where = where

    def __call__(self, ids: Iterable[str]) -> dict[str, list[str]]:
        return {b: list(self.where[b]) for b in ids if b in self.where}


def untag(name: str) -> Command:
    return Command("untag", tag=name)


def test_overlapping_holds_pin_under_each_name_and_unpin_when_the_last_goes() -> None:
    loc = Map({IDS[0]: ["w1"], IDS[1]: ["w1", "w2"], IDS[2]: ["w2"]})
    r = HoldRegistry()
    r.create("a", "pin", ["s3://b/x"], now=10.0)
    cmds = r.add_blocks("a", IDS[:2], loc)
    assert cmds == {"w1": [Command("pin", IDS[:2], tag="a")], "w2": [Command("pin", [IDS[1]], tag="a")]}
    r.create("b", "protect", ["s3://b/y"], now=11.0)
    # IDS[1] is kept already, but is pinned again under b's name: its reads count for b too.
    assert r.add_blocks("b", IDS[1:3], loc) == {
        "w1": [Command("pin", [IDS[1]], tag="b")],
        "w2": [Command("pin", IDS[1:3], tag="b")],
    }
    hold, cmds = r.remove("a", loc, evict_first=True)
    assert hold.name == "a"
    assert cmds == {"w1": [Command("release", [IDS[0]]), untag("a")], "w2": [untag("a")]}
    assert r.is_kept(IDS[1]) and not r.is_kept(IDS[0])
    _, cmds = r.remove("b", loc, evict_first=False)
    assert cmds == {
        "w1": [Command("unpin", [IDS[1]]), untag("b")],
        "w2": [Command("unpin", IDS[1:3]), untag("b")],
    }
    with pytest.raises(NoSuchHold):
        r.remove("b", loc, evict_first=False)


def test_names_are_per_kind_and_extend() -> None:
    r = HoldRegistry()
    r.create("a", "pin", ["p1"], now=1.0)
    hold = r.create("a", "pin", ["p2", "p1"], now=5.0, ttl=10.0)
    assert hold.paths == ["p1", "p2"] and hold.created == 1.0 and hold.expires == 15.0
    with pytest.raises(BadRequest):
        r.create("a", "protect", ["p3"], now=6.0)
    assert [h.name for h in r.holds()] == ["a"]


def test_pins_ahead_reach_the_owner_and_are_undone_there() -> None:
    loc = Map({IDS[0]: ["w1"]})
    r = HoldRegistry()
    r.create("a", "pin", ["p"], now=0.0)
    cmds = r.add_blocks("a", IDS[:3], loc, owner=lambda b: "w2")
    assert cmds == {"w1": [Command("pin", [IDS[0]], tag="a")], "w2": [Command("pin", IDS[1:3], tag="a")]}
    # A load lands IDS[1] on w2 and reports it: the block map now knows.
    r.arrived("w2", [IDS[1]])
    loc.where[IDS[1]] = ["w2"]
    _, cmds = r.remove("a", loc, evict_first=False)
    assert cmds == {
        "w1": [Command("unpin", [IDS[0]]), untag("a")],
        "w2": [Command("unpin", IDS[1:3]), untag("a")],
    }


def test_heartbeat_pins_for_arrivals_and_loads() -> None:
    r = HoldRegistry()
    r.create("a", "protect", ["p"], now=0.0)
    r.add_blocks("a", IDS[:2], Map({}))
    r.create("b", "pin", ["q"], now=0.0)
    r.add_blocks("b", IDS[1:3], Map({}))
    assert r.pins_for("w1", [IDS[0], IDS[5]]) == [Command("pin", [IDS[0]], tag="a")]
    assert r.pins_for("w1", [IDS[5]]) == []
    # A block two holds keep: one pin per hold, each with its tag.
    assert r.pins_for("w3", [IDS[1]], ahead=True) == [
        Command("pin", [IDS[1]], tag="a"),
        Command("pin", [IDS[1]], tag="b"),
    ]
    r.forget_worker("w3")  # it restarted: nothing to undo there any more, tags gone too
    _, cmds = r.remove("a", Map({}), evict_first=True)
    assert cmds == {"w1": [untag("a")]}


def test_read_counts_sum_over_workers_and_survive_a_worker_leaving() -> None:
    r = HoldRegistry()
    r.create("a", "protect", ["p"], now=0.0)
    r.add_blocks("a", IDS[:2], Map({IDS[0]: ["w1"], IDS[1]: ["w2"]}))
    r.count_reads("w1", {"a": [4, 3], "gone": [9, 9]})  # a tag of an ended hold is ignored
    r.count_reads("w2", {"a": [2, 2]})
    r.count_reads("w1", {"a": [5, 3]})  # cumulative: the latest figures replace the last
    assert r.get("a").read_counts() == (7, 5)
    info = r.get("a").info(2)
    assert (info.reads, info.hits) == (7, 5)
    r.forget_worker("w1")  # its counts stay with the hold; it starts again from zero
    r.count_reads("w1", {"a": [1, 0]})
    assert r.get("a").read_counts() == (8, 5)
    other = HoldRegistry()
    other.restore(r.snapshot())
    assert other.get("a").read_counts() == (8, 5)


def test_ttl_entries_keep_nothing_and_free_at_expiry() -> None:
    loc = Map({b: ["w1"] for b in IDS[:4]})
    r = HoldRegistry()
    r.create("t", "ttl", ["p"], now=100.0, ttl=30.0)
    assert r.add_blocks("t", IDS[:4], loc) == {}
    assert not r.is_kept(IDS[0])
    r.create("keep", "pin", ["q"], now=100.0, ttl=60.0)
    r.add_blocks("keep", [IDS[3]], loc)
    assert r.expire(129.9, loc) == []
    (done,) = r.expire(130.0, loc)
    assert done.hold.name == "t" and done.commands == {"w1": [Command("free", IDS[:3])]}
    (done,) = r.expire(500.0, loc)  # a pin with a ttl unpins
    assert done.commands == {"w1": [Command("unpin", [IDS[3]]), untag("keep")]}
    assert r.holds() == []


def test_free_refuses_kept_blocks_unless_forced() -> None:
    loc = Map({IDS[0]: ["w1"], IDS[1]: ["w2"], IDS[2]: ["w1", "w2"]})
    r = HoldRegistry()
    r.create("a", "pin", ["p"], now=0.0)
    r.add_blocks("a", [IDS[2], IDS[7]], loc)
    cmds, freed, refused = r.frees(IDS[:3] + [IDS[8]], loc, force=False)
    assert (freed, refused) == (2, 1)
    assert cmds == {"w1": [Command("free", [IDS[0]])], "w2": [Command("free", [IDS[1]])]}
    cmds, freed, refused = r.frees(IDS[:3], loc, force=True)
    assert (freed, refused) == (3, 0) and cmds["w2"] == [Command("free", IDS[1:3])]
    assert r.is_kept(IDS[2])  # forcing drops bytes, not the hold


def test_snapshot_round_trip() -> None:
    loc = Map({})
    r = HoldRegistry()
    r.create("a", "pin", ["p"], now=1.0, ttl=5.0)
    r.add_blocks("a", IDS[:3], loc)
    r.create("b", "protect", ["q"], now=2.0)
    r.add_blocks("b", IDS[2:4], loc)
    r.create("t", "ttl", ["r"], now=3.0, ttl=9.0)
    r.add_blocks("t", IDS[5:6], loc)
    snap = r.snapshot()
    other = HoldRegistry()
    other.restore(snap)
    assert other.snapshot() == snap
    assert other.kept(IDS) == IDS[:4]
    _, cmds = other.remove("b", Map({IDS[2]: ["w"], IDS[3]: ["w"]}), evict_first=True)
    assert cmds == {"w": [Command("release", [IDS[3]])]}  # IDS[2] is still in "a"


@pytest.mark.parametrize(
    "cls,body",
    [
        (HoldRequest, {"name": "", "paths": ["s3://b/"]}),
        (HoldRequest, {"name": "n", "paths": []}),
        (HoldRequest, {"name": "n", "paths": ["s3://b/"], "kind": "ttl"}),
        (HoldRequest, {"name": "n", "paths": ["s3://b/"], "ttl": -1}),
        (HoldRequest, {"name": "n", "paths": ["s3://b/"], "ttl": float("nan")}),
        (HoldRequest, {"name": "n" * 600, "paths": ["s3://b/"]}),
        (HoldRequest, {"name": "n", "paths": ["http://b/"]}),
        (ReleaseRequest, {"name": 3}),
        (FreeRequest, {"paths": ["s3:///x"]}),
        (FreeRequest, {"paths": ["s3://b/"], "force": "yes"}),
        (TtlRequest, {"paths": ["s3://b/"], "seconds": 0}),
        (TtlRequest, {"paths": ["s3://b/"]}),
        (LoadRequest, {"paths": ["s3://b/"], "hold": "x" * 600}),
    ],
)
def test_hostile_hold_messages_are_refused(cls: type, body: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        cls.from_wire(body)


def test_load_request_hold_travels_only_when_set() -> None:
    assert "hold" not in LoadRequest(["s3://b/"]).to_wire()
    req = LoadRequest.from_wire(LoadRequest(["s3://b/"], 2, "run-1").to_wire())
    assert (req.priority, req.hold) == (2, "run-1")

"""Tenant quotas on the master: share arithmetic, the commands sent, and the journal."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipecache.client.protocol import (
    BlockRef,
    Command,
    HeartbeatRequest,
    QuotaRequest,
    RegisterRequest,
    check_tenant,
)
from pipecache.master.durable import Durable
from pipecache.master.quotas import QuotaBook, QuotaService, shares
from pipecache.master.state import ClusterState
from pipecache.tiering.errors import BadRequest

GIB = 1 << 30


# -- shares -----------------------------------------------------------------------------


def test_shares_follow_capacity_and_never_add_up_to_more() -> None:
    got = shares({"a": 1000, "b": 7}, {"w1": 1 * GIB, "w2": 3 * GIB})
    assert got == {"w1": {"a": 250, "b": 1}, "w2": {"a": 750, "b": 5}}
    for tenant, quota in {"a": 1000, "b": 7}.items():
        assert sum(s[tenant] for s in got.values()) <= quota
    odd = shares({"a": 10}, {"w1": 1, "w2": 1, "w3": 1})
    assert [s["a"] for s in odd.values()] == [3, 3, 3]


def test_shares_edge_cases() -> None:
    assert shares({"a": 100}, {}) == {}
    assert shares({"a": 100}, {"w1": 0, "w2": 0}) == {"w1": {"a": 0}, "w2": {"a": 0}}
    assert shares({"a": 100}, {"w1": 0, "w2": 5}) == {"w1": {"a": 0}, "w2": {"a": 100}}
    assert shares({}, {"w1": 5}) == {"w1": {}}


# -- the service ------------------------------------------------------------------------


def _register(state: ClusterState, svc: QuotaService, wid: str, gib: int) -> None:
    state.register(RegisterRequest(wid, f"http://{wid}", capacity={"memory": gib * GIB}), 0.0)
    svc.on_register(wid)


def _commands(state: ClusterState, wid: str) -> list[Command]:
    return state.heartbeat(HeartbeatRequest(wid), 0.0).commands


def test_shares_are_sent_and_resent_on_changes() -> None:
    state = ClusterState(10.0)
    svc = QuotaService(state)
    _register(state, svc, "w1", 1)
    assert _commands(state, "w1") == []  # no quotas yet: nothing to say
    assert svc.update(QuotaRequest({"a": 1000}))
    assert _commands(state, "w1") == [Command("quota", quotas={"a": 1000})]
    assert not svc.update(QuotaRequest({"a": 1000}))  # idempotent: no change, nothing sent
    assert _commands(state, "w1") == []
    _register(state, svc, "w2", 3)  # a bigger worker joins: w1 keeps a quarter
    assert _commands(state, "w1") == [Command("quota", quotas={"a": 250})]
    assert _commands(state, "w2") == [Command("quota", quotas={"a": 750})]
    _register(state, svc, "w2", 3)  # re-registration: w2 gets its share again, w1 unchanged
    assert _commands(state, "w1") == []
    assert _commands(state, "w2") == [Command("quota", quotas={"a": 750})]
    state.expire(100.0)
    state.register(RegisterRequest("w1", "http://w1", capacity={"memory": GIB}), 100.0)
    svc.on_workers_gone(["w2"])  # w1 alone again: the whole quota
    assert _commands(state, "w1") == [Command("quota", quotas={"a": 1000})]
    assert svc.update(QuotaRequest(unlimited=["a"]))  # lifted: an empty share clears it
    assert _commands(state, "w1") == [Command("quota", quotas={})]


# -- the book and its journal -------------------------------------------------------------


def test_book_updates_merge_and_lift() -> None:
    book = QuotaBook()
    assert book.update(QuotaRequest({"a": 5, "b": 6}))
    assert book.update(QuotaRequest({"b": 7}, ["a"]))
    assert book.quotas() == {"b": 7}
    assert not book.update(QuotaRequest(unlimited=["zz"]))


def test_quotas_survive_a_restart_through_the_journal(tmp_path: Path) -> None:
    first = Durable()
    book = QuotaBook()
    first.register("quotas", book)
    first.open(tmp_path)
    book.update(QuotaRequest({"vision": 200 * GIB, "nlp": 5}))
    first.save("quotas")
    book.update(QuotaRequest(unlimited=["nlp"]))
    first.save("quotas")
    # No clean close: the journal's records (not a checkpoint) must carry it.
    again, restored = Durable(), QuotaBook()
    again.register("quotas", restored)
    assert again.open(tmp_path) == 2
    assert restored.quotas() == {"vision": 200 * GIB}
    first.close()
    again.close()


@pytest.mark.parametrize("bad", [[], {"a": -1}, {"bad name": 1}, {"a": True}, {"a": "1"}])
def test_book_refuses_a_malformed_snapshot(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        QuotaBook().restore(bad)


# -- the wire ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "-a", "a b", "a/b", "é", "x" * 65, "a\n"])
def test_tenant_names_are_checked(name: str) -> None:
    with pytest.raises(BadRequest):
        check_tenant(name, "t")
    with pytest.raises(BadRequest):
        QuotaRequest.from_wire({"quotas": {name: 1}})
    q = BlockRef("b", "k", "e", 0, 10, 10).to_query()
    with pytest.raises(BadRequest):
        BlockRef.from_query({**q, "t": name} if name else {**q, "t": "-"})


def test_block_ref_carries_the_tenant() -> None:
    ref = BlockRef("b", "k", "e", 0, 10, 10, "vision.team-1")
    back = BlockRef.from_query(ref.to_query())
    assert back == ref and back.block_id() == BlockRef("b", "k", "e", 0, 10, 10).block_id()
    assert "t" not in BlockRef("b", "k", "e", 0, 10, 10).to_query()


def test_quota_messages_refuse_hostile_input() -> None:
    with pytest.raises(BadRequest):
        QuotaRequest.from_wire({"quotas": {"a": -1}})
    with pytest.raises(BadRequest):
        QuotaRequest.from_wire({"quotas": {"a": 1}, "unlimited": ["a"]})
    with pytest.raises(BadRequest):
        QuotaRequest.from_wire({"quotas": {f"t{i}": 1 for i in range(10_001)}})
    with pytest.raises(BadRequest):
        Command.from_wire({"kind": "quota", "quotas": {"a": "x"}})
    assert Command("quota", quotas={}).to_wire() == {"kind": "quota", "blocks": []}


def test_beats_carry_each_tenants_use_to_the_workers_view() -> None:
    state = ClusterState(10.0)
    state.register(RegisterRequest("w1", "http://w1"), 0.0)
    state.heartbeat(HeartbeatRequest("w1", tenants={"vision": 300}), 0.0)
    assert state.workers()[0].tenants == {"vision": 300}
    state.heartbeat(HeartbeatRequest("w1"), 0.0)  # nothing charged any more
    assert state.workers()[0].tenants == {}
    with pytest.raises(BadRequest):
        HeartbeatRequest.from_wire({"worker_id": "w1", "tenants": {"a b": 1}})
    assert "tenants" not in HeartbeatRequest("w1").to_wire()

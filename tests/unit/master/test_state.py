"""ClusterState: registration, deltas, expiry, locate, commands and memory per block."""

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Sequence

import pytest
from pipecache.client.protocol import Command, HeartbeatRequest, RegisterRequest
from pipecache.master.state import ClusterState
from pipecache.tiering.errors import UnknownWorker

TIMEOUT = 10.0


def ids(*nums: int) -> list[str]:
    return [f"{n:016x}" for n in nums]


def reg(wid: str, blocks: list[str], address: str = "") -> RegisterRequest:
    return RegisterRequest(wid, address or f"http://{wid}:9100", {"memory": 1 << 30}, {}, blocks)


def beat(wid: str, added: Sequence[str] = (), removed: Sequence[str] = ()) -> HeartbeatRequest:
    return HeartbeatRequest(wid, list(added), list(removed))


@pytest.fixture
def state() -> ClusterState:
    s = ClusterState(TIMEOUT)
    s.register(reg("w1", ids(1, 2, 3)), now=0.0)
    s.register(reg("w2", ids(3, 4)), now=0.0)
    return s


def test_register_adds_workers_sorted_with_counts(state: ClusterState) -> None:
    infos = state.workers()
    assert [w.worker_id for w in infos] == ["w1", "w2"]
    assert [w.blocks for w in infos] == [3, 2]
    assert infos[0].address == "http://w1:9100" and infos[0].capacity == {"memory": 1 << 30}
    assert state.block_count() == 4
    assert state.worker_count() == 2


def test_locate_single_multiple_and_absent(state: ClusterState) -> None:
    got = state.locate(ids(1, 3, 99))
    assert got == {ids(1)[0]: ["w1"], ids(3)[0]: ["w1", "w2"]}


def test_reregister_replaces_the_whole_block_set(state: ClusterState) -> None:
    state.register(reg("w1", ids(2, 5), address="http://new:9100"), now=1.0)
    assert state.blocks_of("w1") == ids(2, 5)
    assert state.locate(ids(1, 3)) == {ids(3)[0]: ["w2"]}
    w1 = state.workers()[0]
    assert (w1.address, w1.blocks, w1.last_seen) == ("http://new:9100", 2, 1.0)
    assert state.block_count() == 4  # 2, 3, 4, 5


def test_reregister_with_empty_report_clears(state: ClusterState) -> None:
    state.register(reg("w2", []), now=1.0)
    assert state.blocks_of("w2") == []
    assert state.locate(ids(3, 4)) == {ids(3)[0]: ["w1"]}


def test_duplicate_ids_in_report_count_once() -> None:
    s = ClusterState(TIMEOUT)
    s.register(reg("w", ids(7, 7, 7)), now=0.0)
    assert s.workers()[0].blocks == 1 and s.block_count() == 1


def test_heartbeat_applies_deltas_and_usage(state: ClusterState) -> None:
    reply = state.heartbeat(
        HeartbeatRequest("w1", ids(4, 6), ids(1, 99), {"memory": 123}), now=2.0
    )
    assert reply.commands == []
    assert state.blocks_of("w1") == ids(2, 3, 4, 6)
    assert state.locate(ids(4)) == {ids(4)[0]: ["w1", "w2"]}
    w1 = state.workers()[0]
    assert (w1.blocks, w1.usage, w1.last_seen) == (4, {"memory": 123}, 2.0)


def test_heartbeat_removed_then_added_ends_present(state: ClusterState) -> None:
    state.heartbeat(beat("w1", added=ids(8), removed=ids(8)), now=1.0)
    assert state.locate(ids(8)) == {ids(8)[0]: ["w1"]}


def test_heartbeat_removing_from_a_multi_holder_block(state: ClusterState) -> None:
    state.heartbeat(beat("w2", removed=ids(3)), now=1.0)
    assert state.locate(ids(3)) == {ids(3)[0]: ["w1"]}
    state.heartbeat(beat("w1", removed=ids(3)), now=1.0)
    assert state.locate(ids(3)) == {}


def test_heartbeat_without_usage_keeps_usage() -> None:
    s = ClusterState(TIMEOUT)
    s.register(RegisterRequest("w", "http://w:1", {}, {"ssd": 5}, []), now=0.0)
    s.heartbeat(beat("w"), now=1.0)
    assert s.workers()[0].usage == {"ssd": 5}


def test_unknown_worker_heartbeat_raises(state: ClusterState) -> None:
    with pytest.raises(UnknownWorker):
        state.heartbeat(beat("nobody"), now=1.0)


def test_expire_drops_silent_workers_and_their_blocks(state: ClusterState) -> None:
    state.heartbeat(beat("w2"), now=5.0)
    assert state.expire(now=TIMEOUT) == []  # exactly at the timeout: still alive
    assert state.expire(now=TIMEOUT + 1) == ["w1"]
    assert [w.worker_id for w in state.workers()] == ["w2"]
    assert state.locate(ids(1, 2, 3, 4)) == {ids(3)[0]: ["w2"], ids(4)[0]: ["w2"]}
    assert state.block_count() == 2
    with pytest.raises(UnknownWorker):
        state.heartbeat(beat("w1"), now=TIMEOUT + 2)


def test_expire_several_at_once(state: ClusterState) -> None:
    assert state.expire(now=100.0) == ["w1", "w2"]
    assert state.block_count() == 0 and state.workers() == []


def test_reregister_after_expiry_and_slot_reuse(state: ClusterState) -> None:
    state.heartbeat(beat("w2"), now=15.0)
    state.expire(now=15.0)
    state.register(reg("w3", ids(1, 4)), now=16.0)  # takes w1's freed slot
    state.register(reg("w1", ids(9)), now=16.0)
    assert state.locate(ids(1, 4, 9)) == {
        ids(1)[0]: ["w3"],
        ids(4)[0]: ["w2", "w3"],
        ids(9)[0]: ["w1"],
    }
    assert [w.blocks for w in state.workers()] == [1, 2, 2]


def test_commands_are_queued_and_drained(state: ClusterState) -> None:
    free = Command("free", ids(1))
    state.queue_command("w1", free)
    state.queue_command("w1", Command("free", ids(2)))
    assert state.heartbeat(beat("w2"), now=1.0).commands == []
    assert state.heartbeat(beat("w1"), now=1.0).commands == [free, Command("free", ids(2))]
    assert state.heartbeat(beat("w1"), now=2.0).commands == []
    with pytest.raises(UnknownWorker):
        state.queue_command("nobody", free)


def test_commands_of_an_expired_worker_are_dropped(state: ClusterState) -> None:
    state.queue_command("w1", Command("free", ids(1)))
    state.expire(now=100.0)
    state.register(reg("w1", []), now=100.0)
    assert state.heartbeat(beat("w1"), now=100.0).commands == []


def test_invalid_timeout() -> None:
    with pytest.raises(ValueError):
        ClusterState(0)


def test_random_operations_match_a_simple_model() -> None:
    """Random registers, deltas and expiries against a dict-of-sets reference."""
    rnd = random.Random(7)
    s = ClusterState(TIMEOUT)
    model: dict[str, set[str]] = {}
    last: dict[str, float] = {}
    universe = ids(*range(40))
    now = 0.0
    for _ in range(3000):
        now += rnd.random()
        wid = f"w{rnd.randrange(5)}"
        op = rnd.random()
        if op < 0.1 or (wid not in model and op < 0.5):
            blocks = rnd.sample(universe, rnd.randrange(10))
            s.register(reg(wid, blocks), now)
            model[wid], last[wid] = set(blocks), now
        elif wid in model:
            added, removed = rnd.sample(universe, 3), rnd.sample(universe, 3)
            s.heartbeat(beat(wid, added, removed), now)
            model[wid] = (model[wid] - set(removed)) | set(added)
            last[wid] = now
        if rnd.random() < 0.05:
            dead = sorted(w for w in model if now - last[w] > TIMEOUT)
            assert s.expire(now) == dead
            for w in dead:
                del model[w]
        expected: dict[str, list[str]] = {}
        for w in sorted(model):
            for b in model[w]:
                expected.setdefault(b, []).append(w)
        assert s.locate(universe) == expected
        assert s.block_count() == len(expected)
        assert s._shared == sum(len(h) > 1 for h in expected.values())
        assert {w.worker_id: w.blocks for w in s.workers()} == {w: len(b) for w, b in model.items()}


def _bytes_per_block(n: int, holders: int) -> float:
    rnd = random.Random(1)
    blocks = [f"{rnd.getrandbits(64):016x}" for _ in range(n)]
    reports = [reg(f"w{i}", blocks[i::holders]) for i in range(holders)]
    gc.collect()
    tracemalloc.start()
    try:
        s = ClusterState(TIMEOUT)
        before = tracemalloc.get_traced_memory()[0]
        for r in reports:
            s.register(r, now=0.0)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert s.block_count() == n
    return used / n


@pytest.mark.parametrize("holders", [1, 4])
def test_memory_per_block_is_under_200_bytes(holders: int) -> None:
    # tracemalloc counts requested bytes (a 64-bit int key: 36); pymalloc rounds
    # up to 16 (48), so real RSS runs ~12 bytes per block above this figure.
    per_block = _bytes_per_block(200_000, holders)
    print(f"{per_block:.1f} bytes per block over {holders} worker(s)")
    assert per_block < 200


def test_memory_with_replicated_blocks_stays_bounded() -> None:
    s = ClusterState(TIMEOUT)
    blocks = ids(*range(1 << 40, (1 << 40) + 50_000))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        s.register(reg("a", blocks), now=0.0)
        s.register(reg("b", blocks), now=0.0)  # every block on two workers: tuples
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used / len(blocks) < 200
    assert s.locate(blocks[:1]) == {blocks[0]: ["a", "b"]}

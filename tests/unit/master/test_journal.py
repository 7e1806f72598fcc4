"""The master's journal: framing (pure), replay, torn tails, checkpoints and their crash points."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pipecache.master import journal as jmod
from pipecache.master.journal import (
    HEADER_SIZE,
    Journal,
    JournalError,
    Record,
    decode_records,
    encode_record,
)

bodies = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
records = st.lists(st.builds(Record, st.text(min_size=1, max_size=12), bodies), max_size=8)


def _blob(recs: list[Record]) -> bytes:
    return b"".join(encode_record(r.kind, r.body) for r in recs)


@given(records)
def test_records_round_trip(recs: list[Record]) -> None:
    blob = _blob(recs)
    assert decode_records(blob) == (recs, len(blob))


@given(records, st.data())
def test_any_prefix_replays_to_a_prefix_of_the_records(recs: list[Record], data: st.DataObject) -> None:
    blob = _blob(recs)
    cut = data.draw(st.integers(0, len(blob)))
    got, good = decode_records(blob[:cut])
    assert got == recs[: len(got)]
    # The good length is exactly the end of the last whole record, and no whole record is lost.
    ends = [len(_blob(recs[:i])) for i in range(len(recs) + 1)]
    assert good == max(e for e in ends if e <= cut)
    assert len(got) == ends.index(good)


@given(records.filter(lambda r: len(r) >= 2), st.data())
def test_a_flipped_bit_ends_the_journal_at_that_record(recs: list[Record], data: st.DataObject) -> None:
    blob = bytearray(_blob(recs))
    pos = data.draw(st.integers(0, len(blob) - 1))
    blob[pos] ^= 1 << data.draw(st.integers(0, 7))
    got, good = decode_records(bytes(blob))
    hit = next(i for i in range(len(recs)) if len(_blob(recs[: i + 1])) > pos)
    assert got == recs[:hit]
    assert good == len(_blob(recs[:hit]))


def test_a_garbage_length_is_a_torn_tail_not_a_huge_read() -> None:
    good = encode_record("a/b", 1)
    assert decode_records(good + b"\xff" * HEADER_SIZE) == ([Record("a/b", 1)], len(good))


def test_unpackable_body_is_refused() -> None:
    with pytest.raises(TypeError):
        encode_record("a/b", object())


# ---- files -------------------------------------------------------------------------


def _reopen(path: Path) -> tuple[dict[str, Any], list[Record]]:
    j, state, recs = Journal.open(path)
    j.close()
    return state, recs


def test_empty_folder_opens_empty_and_is_created(tmp_path: Path) -> None:
    assert _reopen(tmp_path / "new" / "journal") == ({}, [])
    assert (tmp_path / "new" / "journal").is_dir()


def test_appends_are_replayed_in_order(tmp_path: Path) -> None:
    j, _, _ = Journal.open(tmp_path)
    for i in range(5):
        j.append("jobs/created", {"id": f"job-{i}"})
    j.close()
    _, recs = _reopen(tmp_path)
    assert [r.body["id"] for r in recs] == [f"job-{i}" for i in range(5)]


def _only_journal(path: Path) -> Path:
    (f,) = [p for p in path.iterdir() if p.name.startswith("journal-")]
    return f


@pytest.mark.parametrize("damage", ["torn", "bad-checksum"])
def test_damaged_tail_is_dropped_truncated_and_appends_follow_good_records(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    j, _, _ = Journal.open(tmp_path)
    for i in range(3):
        j.append("k/v", i)
    j.close()
    f = _only_journal(tmp_path)
    data = f.read_bytes()
    two = len(_blob([Record("k/v", 0), Record("k/v", 1)]))
    if damage == "torn":
        f.write_bytes(data[:-3])
    else:
        f.write_bytes(data[:-1] + bytes([data[-1] ^ 0x40]))
    with caplog.at_level(logging.WARNING, logger="pipecache.master.journal"):
        j, _, recs = Journal.open(tmp_path)
    assert [r.body for r in recs] == [0, 1]
    assert "torn or corrupt tail" in caplog.text
    assert f.stat().st_size == two
    j.append("k/v", 3)
    j.close()
    assert [r.body for r in _reopen(tmp_path)[1]] == [0, 1, 3]


def test_checkpoint_then_replay_gives_the_snapshot_and_later_records(tmp_path: Path) -> None:
    j, _, _ = Journal.open(tmp_path)
    j.append("k/v", 1)
    j.checkpoint({"jobs": [{"id": "job-1"}]})
    assert j.appended == 0
    j.append("k/v", 2)
    j.close()
    state, recs = _reopen(tmp_path)
    assert state == {"jobs": [{"id": "job-1"}]}
    assert recs == [Record("k/v", 2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal-00000001", "snapshot"]


class Crash(Exception):
    pass


@pytest.mark.parametrize("step", range(5))
def test_a_crash_at_any_checkpoint_step_replays_to_the_same_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: int
) -> None:
    """Stop the checkpoint before each of its steps: the folder as it is then (a crash) and the
    journal still in use (an error) both replay to the same state."""
    live, crashed_copy = tmp_path / "live", tmp_path / "crashed"
    j, _, _ = Journal.open(live)
    j.checkpoint({"n": 1})
    j.append("k/v", "a")
    j.append("k/v", "b")
    calls = {"n": 0}
    real = {"fsync_dir": jmod._fsync_dir, "replace": os.replace, "unlink": Path.unlink}

    def boom(name: str) -> Any:
        def fn(*args: Any, **kw: Any) -> Any:
            calls["n"] += 1
            if calls["n"] > step:
                raise Crash(name)
            return real[name](*args, **kw)

        return fn

    monkeypatch.setattr(jmod, "_fsync_dir", boom("fsync_dir"))
    monkeypatch.setattr(jmod.os, "replace", boom("replace"))
    monkeypatch.setattr(jmod.Path, "unlink", boom("unlink"))
    # fsync_dir, replace, fsync_dir, unlink: step 4 lets the checkpoint finish.
    try:
        j.checkpoint({"n": 1, "folded": ["a", "b"]})
        crashed = False
    except Crash:
        crashed = True
    monkeypatch.undo()
    assert crashed == (step < 4)
    shutil.copytree(live, crashed_copy)  # what a crash at this step leaves on disk
    old, new = ({"n": 1}, ["a", "b"]), ({"n": 1, "folded": ["a", "b"]}, [])
    expected = old if step < 2 else new  # the rename is the commit point

    state, recs = _reopen(crashed_copy)
    assert (state, [r.body for r in recs]) == expected
    j.append("k/v", "after")  # the journal in use still takes appends, in the right file
    j.close()
    state, recs = _reopen(live)
    assert (state, [r.body for r in recs]) == (expected[0], [*expected[1], "after"])
    for folder in (live, crashed_copy):  # leftovers of the interrupted checkpoint are gone
        assert len([p for p in folder.iterdir() if p.name.startswith("journal-")]) == 1
        assert not (folder / "snapshot.tmp").exists()


def test_a_failed_append_leaves_no_torn_frame_before_later_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    j, _, _ = Journal.open(tmp_path)
    j.append("k/v", 1)
    real_write = os.write

    def disk_full(fd: int, data: bytes) -> int:
        real_write(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(jmod.os, "write", disk_full)
    with pytest.raises(OSError):
        j.append("k/v", 2)
    monkeypatch.undo()
    j.append("k/v", 3)
    j.close()
    assert [r.body for r in _reopen(tmp_path)[1]] == [1, 3]


def test_a_damaged_snapshot_is_an_error_not_an_empty_state(tmp_path: Path) -> None:
    j, _, _ = Journal.open(tmp_path)
    j.checkpoint({"n": 1})
    j.close()
    snap = tmp_path / "snapshot"
    snap.write_bytes(snap.read_bytes()[:-1])
    with pytest.raises(JournalError, match="damaged"):
        Journal.open(tmp_path)


def test_a_file_in_the_way_gives_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(JournalError, match="cannot use journal folder"):
        Journal.open(tmp_path / "f" / "journal")


def test_a_folder_without_write_permission_gives_a_clear_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    tmp_path.chmod(0o755)
    code = (
        "import sys\n"
        "from pipecache.master.journal import Journal, JournalError\n"
        "try:\n"
        f"    Journal.open({str(locked / 'journal')!r})\n"
        "except JournalError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:  # root ignores permission bits unless it gives up the override capability
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permission bits cannot be enforced")
        drop = "-dac_override,-dac_read_search"
        cmd = [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "permission denied" in proc.stdout and str(locked) in proc.stdout


def test_append_fsync_cost(tmp_path: Path) -> None:
    """Every append is fsynced by default; measured, not asserted tight (shared disks vary)."""
    import time

    j, _, _ = Journal.open(tmp_path)
    t0 = time.perf_counter()
    for i in range(50):
        j.append("jobs/created", {"id": f"job-{i}", "paths": ["s3://b/p/"], "priority": 0})
    per = (time.perf_counter() - t0) / 50
    j.close()
    assert len(_reopen(tmp_path)[1]) == 50
    assert per < 0.5, f"{per * 1000:.1f} ms per fsynced append"

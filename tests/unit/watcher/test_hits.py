"""Measured hit ratios: a step's hold's latest counts, summed per run."""

from __future__ import annotations

import io
import json

from pipecache.watcher.hits import Reads, RunHits, StepReads
from pipecache.watcher.scheduler import RunRef
from pipecache.watcher.timeline import TimelineWriter


def test_steps_keep_their_latest_counts_and_runs_sum_them() -> None:
    h = RunHits()
    assert h.update("ns/r", "a", Reads(4, 4)) == Reads(4, 4)
    assert h.update("ns/r", "a", Reads(6, 5)) == Reads(2, 1)  # cumulative: only the gain counts
    assert h.update("ns/r", "b", Reads(2, 0)) == Reads(2, 0)
    assert h.step("ns/r", "a") == Reads(6, 5) and h.step("ns/r", "c") == Reads()
    assert h.run("ns/r") == Reads(8, 5) and h.run("ns/r").ratio == 5 / 8
    assert h.run("ns/other").ratio is None
    # A master that restarted reports less: nothing is taken back.
    assert h.update("ns/r", "a", Reads(1, 1)) == Reads(0, 0) and h.step("ns/r", "a") == Reads(6, 5)
    assert h.end("ns/r") == Reads(8, 5) and h.run("ns/r") == Reads()


def test_step_reads_are_timeline_lines() -> None:
    out = io.StringIO()
    TimelineWriter(out)(StepReads(RunRef("ns", "wf"), "train", "kfp:ns/wf/train", 8, 6, 0.75), 5.0)
    assert json.loads(out.getvalue()) == {
        "t": 5.0,
        "action": "StepReads",
        "run": "ns/wf",
        "step": "train",
        "hold": "kfp:ns/wf/train",
        "reads": 8,
        "hits": 6,
        "ratio": 0.75,
    }

"""The load verbs' output: progress line, terminal redraws, plain periodic lines."""

from __future__ import annotations

import io

from pipecache.cli.jobs import Progress, bar_line, job_line
from pipecache.client.protocol import JobInfo

INFO = JobInfo(
    "job-7", "running", objects_total=10, objects_done=4, bytes_total=10 << 20, bytes_done=4 << 20,
    blocks_total=20, blocks_resident=5, throughput_bps=2 << 20, eta_seconds=3725.0,
)


def test_job_line_has_percent_objects_bytes_throughput_eta() -> None:
    assert job_line(INFO) == " 25.0%  objects 4/10  4.0MiB/10.0MiB  2.0MiB/s  eta 1:02:05"
    assert "eta --:--" in job_line(JobInfo("j", "listing"))
    assert bar_line(INFO).startswith("job-7 [######..................] running")


def test_terminal_redraws_one_line() -> None:
    out = io.StringIO()
    p = Progress(out, tty=True)
    p.update(INFO)
    p.update(JobInfo("job-7", "done", blocks_total=20, blocks_resident=20, eta_seconds=0.0), final=True)
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "100.0%" in text and "eta 00:00" in text


def test_plain_lines_are_periodic_and_the_last_is_always_printed() -> None:
    out = io.StringIO()
    p = Progress(out, tty=False, every=3600)
    p.update(INFO)
    p.update(INFO)  # too soon
    p.update(JobInfo("job-7", "done"), final=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("job-7 done")

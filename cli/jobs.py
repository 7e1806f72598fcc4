"""Output of the load-job verbs: a one-line progress bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

import click

from ..client import JobInfo, connect
from ..client.stats import human_bytes, human_eta

BAR = 24


def job_line(info: JobInfo) -> str:
    """Percent of blocks resident, objects and bytes done/total, throughput, ETA."""
    return (
        f"{info.fraction * 100:5.1f}%  objects {info.objects_done}/{info.objects_total}  "
        f"{human_bytes(info.bytes_done)}/{human_bytes(info.bytes_total)}  "
        f"{human_bytes(info.throughput_bps)}/s  eta {human_eta(info.eta_seconds)}"
    )


def bar_line(info: JobInfo) -> str:
    filled = int(info.fraction * BAR)
    return f"{info.id} [{'#' * filled}{'.' * (BAR - filled)}] {info.state:<9} {job_line(info)}"


class Progress:
    """Redraws one line on a terminal; elsewhere prints a line at most every ``every`` seconds."""

    def __init__(self, out: TextIO, *, tty: bool, every: float = 5.0) -> None:
        self.out, self.tty, self.every = out, tty, every
        self._last = 0.0
        self._width = 0

    def update(self, info: JobInfo, final: bool = False) -> None:
        line = bar_line(info)
        if self.tty:
            pad = max(self._width - len(line), 0)
            self._width = len(line)
            self.out.write("\r" + line + " " * pad + ("\n" if final else ""))
            self.out.flush()
            return
        now = time.monotonic()
        if final or now - self._last >= self.every:
            self._last = now
            click.echo(f"{info.id} {info.state} {job_line(info)}", file=self.out)


async def run_load(
    master: str, paths: list[str], priority: int, wait: bool, interval: float, as_json: bool
) -> int:
    """Start a job, optionally follow it; the exit code (1 if it failed)."""
    async with connect(master) as pc:
        job = await pc.load(*paths, priority=priority)
        info = job.last
        if wait:
            progress = None if as_json else Progress(sys.stdout, tty=sys.stdout.isatty())
            async for info in job.progress(interval):
                if progress is not None:
                    progress.update(info, final=info.finished)
    if as_json:
        click.echo(json.dumps(info.to_wire(), indent=2))
    elif not wait:
        click.echo(f"{info.id} {info.state}")
    if info.state == "failed":
        if not as_json:
            if info.reason:
                click.echo(f"job failed: {info.reason}", err=True)
            for f in info.failed:
                click.echo(f"failed: s3://{f.bucket}/{f.key}: {f.reason}", err=True)
        return 1
    return 0

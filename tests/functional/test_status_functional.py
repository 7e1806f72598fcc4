"""What operators see: `pipecache report`, the master's gauges, and the status page in a browser.

A cluster of its own, whose master sends one load block per worker at a time
(``--load-window 1``), so a load job of many small objects stays running long
enough to be seen in a browser, part way done.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
from cluster import FAST_TEST_MASTER_ARGS, PcCluster, make_bucket, metric_sum
from pipecache.client import JobInfo, connect

MiB = 1024 * 1024
SLOW_OBJECTS = 200


@pytest.fixture(scope="module")
def slow_cluster(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcCluster]:
    c = PcCluster(
        ufs=moto_server,
        root=tmp_path_factory.mktemp("status-cluster"),
        master_args=(*FAST_TEST_MASTER_ARGS, "--load-window", "1"),
    )
    try:
        yield c.start()
    finally:
        c.stop()


@pytest.fixture
def bucket(s3: Any) -> str:
    return make_bucket(s3, f"status-{uuid.uuid4().hex[:10]}")


def report(c: PcCluster) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "pipecache.cli", "report", "--json", "--master", c.master],
        check=True,
        capture_output=True,
        timeout=30,
    )
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def settled_report(c: PcCluster, timeout: float = 10.0) -> dict[str, Any]:
    """The report once the master's copy of every counter matches the workers' own /metrics."""
    deadline = time.monotonic() + timeout
    while True:
        r = report(c)
        s = r["cluster"]["stats"]
        truth = {
            "hit": c.worker_sum("pipecache_cache_hit_bytes_total"),
            "miss": c.worker_sum("pipecache_cache_miss_bytes_total"),
            "ufs": c.worker_sum("pipecache_ufs_read_bytes_total"),
        }
        seen = {"hit": s["bytes_memory"] + s["bytes_ssd"], "miss": s["bytes_miss"], "ufs": s["ufs_bytes"]}
        if seen == truth:
            return r
        if time.monotonic() > deadline:
            raise AssertionError(f"report {seen} never caught up with the workers' metrics {truth}")
        time.sleep(0.2)


async def _read_twice(master: str, bucket: str, key: str) -> bytes:
    async with connect(master) as pc:
        first = await pc.get(bucket, key)
        second = await pc.get(bucket, key)
    assert first == second
    return first


def test_report_counts_hits_misses_and_understore_bytes(
    slow_cluster: PcCluster, s3: Any, bucket: str
) -> None:
    c = slow_cluster
    body = random.Random(3).randbytes(3 * MiB + 100)  # 4 blocks of 1 MiB
    s3.put_object(Bucket=bucket, Key="report/data.bin", Body=body)
    before = settled_report(c)
    assert before["cluster"]["workers"] == 2 and before["cluster"]["workers_reporting"] == 2
    assert asyncio.run(_read_twice(c.master, bucket, "report/data.bin")) == body
    after = settled_report(c)

    def delta(key: str) -> int:
        got: int = after["cluster"]["stats"][key] - before["cluster"]["stats"][key]
        return got

    assert delta("misses") == 4  # the first read: every block from the under-store
    assert delta("hits_memory") + delta("hits_ssd") == 4  # the second: every block cached
    assert delta("ufs_bytes") == len(body) and delta("bytes_miss") == len(body)
    assert after["cluster"]["bytes_served"] - before["cluster"]["bytes_served"] == 2 * len(body)
    # Per worker and per tier: capacity and use as the workers report them.
    workers = {w["worker_id"]: w for w in after["workers"]}
    assert set(workers) == {"w0", "w1"}
    for w in workers.values():
        assert w["capacity"] == {"memory": 16 * MiB, "ssd": 512 * MiB} and w["reporting"]
    assert sum(w["blocks"] for w in workers.values()) == after["cluster"]["blocks"] >= 4
    # The master's gauges say the same.
    assert metric_sum(c.master, "pipecache_master_misses") == after["cluster"]["stats"]["misses"]
    assert metric_sum(c.master, "pipecache_master_ufs_read_bytes") == after["cluster"]["ufs_bytes"]
    assert metric_sum(c.master, "pipecache_master_hit_ratio") == pytest.approx(after["cluster"]["hit_ratio"])
    # And the text output carries the same figures.
    text = subprocess.run(
        [sys.executable, "-m", "pipecache.cli", "report", "--master", c.master],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert text.startswith("cluster: 2 workers") and "hit ratio" in text and "w0  http://127.0.0.1:" in text


class Dom(HTMLParser):
    """Attributes of every element of a dumped DOM, and its text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text = ""
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text += data

    def having(self, **attrs: str) -> list[dict[str, str | None]]:
        return [a for _, a in self.elements if all(a.get(k) == v for k, v in attrs.items())]


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it with apt-get when root)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=True,
        )


async def _start_slow_job(master: str, bucket: str) -> JobInfo:
    """A load job part way done: some blocks resident, most still to come."""
    async with connect(master) as pc:
        job = await pc.load(f"s3://{bucket}/slow/")
        deadline = time.monotonic() + 30
        while True:
            info = await job.info()
            if info.state == "running" and info.blocks_resident >= 2:
                return info
            assert not info.finished and time.monotonic() < deadline, info
            await asyncio.sleep(0.1)


async def _job(master: str, job_id: str, cancel: bool = False) -> JobInfo:
    async with connect(master) as pc:
        return await (pc.job(job_id).cancel() if cancel else pc.job(job_id).info())


def test_status_page_in_a_browser_shows_a_running_job(slow_cluster: PcCluster, s3: Any, bucket: str) -> None:
    c = slow_cluster
    for i in range(SLOW_OBJECTS):
        s3.put_object(Bucket=bucket, Key=f"slow/{i:04d}", Body=b"x" * 1000)
    with urllib.request.urlopen(c.master + "/", timeout=10) as resp:
        assert resp.headers.get_content_type() == "text/html"
    before = asyncio.run(_start_slow_job(c.master, bucket))
    try:
        dom = Dom(chromium("--dump-dom", c.master + "/").stdout)
        after = asyncio.run(_job(c.master, before.id))
    finally:
        asyncio.run(_job(c.master, before.id, cancel=True))
    assert after.state == "running", "the job ended before the page was read: make it slower"
    (row,) = dom.having(**{"data-job": before.id})
    assert row["class"] == "job-running"
    (bar,) = dom.having(role="progressbar", **{"aria-label": f"progress of {before.id}"})
    shown = float(bar["aria-valuenow"] or "nan")
    assert before.fraction * 100 - 0.05 <= shown <= after.fraction * 100 + 0.05
    assert 0 < shown < 100
    assert f"/{SLOW_OBJECTS}" in dom.text  # objects done / total
    # The workers and their tiers are there too, with use bars.
    assert dom.having(**{"data-worker": "w0"}) and dom.having(**{"data-worker": "w1"})
    assert len(dom.having(role="progressbar", **{"aria-label": "memory use"})) == 3  # cluster + 2 workers
    assert "hit ratio" in dom.text

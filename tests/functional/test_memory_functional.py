"""Memory pressure: each process stays within its budget plus a stated margin.

One worker with a 32 MiB memory tier (and an SSD tier) serves six times that
through the gateway, as whole-object streams. The resident memory of the worker,
the gateway and the master is sampled all along: the worker's may grow by its
memory budget plus MARGIN over its idle size, the gateway's (which holds no
cache, only ``read_ahead`` blocks per stream) and the master's by MARGIN alone.
README states the margin.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator

import psutil
import pytest
from cluster import PcCluster, gateway_client

MiB = 1024 * 1024
BUDGET = 32 * MiB
MARGIN = 64 * MiB
"""Allocator slack, buffers of requests in flight and the interpreter's own growth."""
OBJECTS = 4
OBJECT_SIZE = 48 * MiB


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PcCluster, dict[str, str]]]:
    root = tmp_path_factory.mktemp("memory")
    ufs = root / "ufs"
    (ufs / "mem").mkdir(parents=True)
    digests = {}
    for i in range(OBJECTS):
        data = os.urandom(OBJECT_SIZE)
        (ufs / "mem" / f"obj{i}").write_bytes(data)
        digests[f"obj{i}"] = hashlib.sha256(data).hexdigest()
    (ufs / "mem" / "small").write_bytes(b"warm up")
    c = PcCluster(ufs=ufs.as_uri(), root=root, memory="32MiB", ssd="512MiB", n_workers=1)
    try:
        yield c.start(), digests
    finally:
        c.stop()


class Sampler:
    """Peak resident memory of some processes, sampled every 20 ms in a thread."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.idle = {name: p.memory_info().rss for name, p in self.procs.items()}
        self.peak = dict(self.idle)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for name, p in self.procs.items():
                self.peak[name] = max(self.peak[name], p.memory_info().rss)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def growth(self, name: str) -> int:
        return self.peak[name] - self.idle[name]


def test_worker_and_gateway_stay_within_budget_plus_margin(small: tuple[PcCluster, dict[str, str]]) -> None:
    c, digests = small
    gw = gateway_client(c)
    assert gw.get_object(Bucket="mem", Key="small")["Body"].read() == b"warm up"  # code paths loaded
    worker, master = c.workers[0].proc, c.master_proc
    gateway = next(p for n, p in c.procs.procs if n == "gateway")
    assert worker is not None and master is not None
    moved = 0
    with Sampler({"worker": worker.pid, "gateway": gateway.pid, "master": master.pid}) as rss:
        for _ in range(2):  # cold (from the under-store), then what is left cached
            for key, want in digests.items():
                h = hashlib.sha256()
                stream = gw.get_object(Bucket="mem", Key=key)["Body"]
                while part := stream.read(MiB):
                    h.update(part)
                    moved += len(part)
                assert h.hexdigest() == want
    assert moved == 2 * OBJECTS * OBJECT_SIZE  # 12x the memory tier
    grew = {name: f"{rss.growth(name) / MiB:.0f} MiB" for name in rss.procs}
    assert rss.growth("worker") <= BUDGET + MARGIN, grew
    assert rss.growth("gateway") <= MARGIN, grew
    assert rss.growth("master") <= MARGIN, grew  # metadata of a few objects only

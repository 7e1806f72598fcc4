"""Run the watcher in-process against a fake API server and a real cluster; drive a pipeline.

Shared by the watcher's functional tests and ``bench/watcher_timeline.py``. The watcher is
started exactly as ``pipecache watcher run`` starts it (``run_watcher``), reading a generated
kubeconfig file, so it goes through the same kubernetes-asyncio code path as in a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from argosim import ArgoSim
from cluster import PcCluster, free_port, metric_sum
from kubeapi import FakeKubeApi
from pipecache.client import JobInfo, connect
from pipecache.watcher.app import run_watcher
from pipecache.watcher.kube import WatchSettings
from pipecache.watcher.scheduler import Action
from pipecache.watcher.service import WatcherSettings
from prometheus_client.parser import text_string_to_metric_families

REAL_IMPORTER = "argo_v2_compiled/pipeline_with_importer.yaml"


@dataclass
class RunningWatcher:
    url: str
    actions: list[tuple[float, Action]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)

    async def metric(self, name: str, **labels: str) -> float:
        async with aiohttp.ClientSession() as s, s.get(self.url + "/metrics") as r:
            text = await r.text()
        total = 0.0
        for fam in text_string_to_metric_families(text):
            for sample in fam.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total


@contextlib.asynccontextmanager
async def watcher(
    kube: FakeKubeApi,
    master: str,
    tmp: Path,
    *,
    lookahead: int = 2,
    namespaces: tuple[str, ...] = (),
    hits_interval: float = 5.0,
) -> AsyncIterator[RunningWatcher]:
    port = free_port()
    settings = WatcherSettings(
        master=master,
        lookahead=lookahead,
        kubeconfig=str(kube.kubeconfig(tmp / "kubeconfig")),
        metrics_port=port,
        poll_interval=0.05,
        hits_interval=hits_interval,
        watch=WatchSettings(namespaces=namespaces, watch_timeout=60, backoff_initial=0.05, backoff_max=0.5),
    )
    handle = RunningWatcher(f"http://127.0.0.1:{port}")
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_watcher(settings, hooks=[lambda a, t: handle.actions.append((t, a))], stop=stop, signals=False)
    )
    try:
        await until(lambda: _ready(handle.url), timeout=15, what="watcher ready", task=task)
        yield handle
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def watcher_process(kube: FakeKubeApi, master: str, tmp: Path) -> AsyncIterator[RunningWatcher]:
    """``pipecache watcher run`` as its own process (what the Helm chart runs), with a timeline;
    the actions are read back from the timeline file when it stops."""
    port = free_port()
    timeline = tmp / "timeline.jsonl"
    args = ["watcher", "run", f"--master={master}", f"--kubeconfig={kube.kubeconfig(tmp / 'kubeconfig')}"]
    args += [f"--metrics-port={port}", f"--timeline={timeline}"]
    log = (tmp / "watcher.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipecache.cli", "-v", *args, stderr=log
    )
    handle = RunningWatcher(f"http://127.0.0.1:{port}")
    try:
        await until(
            lambda: proc.returncode is None and _ready(handle.url), timeout=20, what="watcher process"
        )
        yield handle
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 15)
        log.close()
        handle.timeline = (
            [json.loads(line) for line in timeline.read_text().splitlines()] if timeline.exists() else []
        )
        assert code == 0, (tmp / "watcher.log").read_text()


async def _ready(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as s, s.get(url + "/readyz") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def until(
    check: Callable[[], Any],
    *,
    timeout: float = 10.0,
    what: str = "condition",
    task: asyncio.Task[Any] | None = None,
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if task is not None and task.done():
            task.result()
            raise AssertionError(f"watcher stopped before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout}s")
        await asyncio.sleep(0.02)


async def jobs_for(master: str, *prefixes: str) -> list[JobInfo]:
    """The master's jobs with a path under one of ``prefixes``, oldest first."""
    async with connect(master) as pc:
        jobs = await pc.jobs()
    return [j for j in jobs if any(p.startswith(prefixes) for p in j.paths)]


@dataclass
class StepRow:
    step: str
    started: float
    inputs: list[str]
    hit_ratio: float


@dataclass
class PipelineRun:
    created: float
    steps: list[StepRow]
    finished: float


async def run_pipeline(
    kube: FakeKubeApi,
    sim: ArgoSim,
    cluster: PcCluster,
    read: Callable[[str], int],
    *,
    tick: float = 0.5,
    write: Callable[[str], None] | None = None,
    read_params: tuple[str, ...] = (),
) -> PipelineRun:
    """Submit ``sim``'s workflow and advance it every ``tick`` seconds to the end.

    Each pod that starts reads its inputs with ``read`` (through the gateway) right away (its
    input artifacts, and the URIs its input parameters named in ``read_params`` hold), then
    writes its output artifacts with ``write``; its hit ratio is the share of the bytes the
    workers served that came from a cache tier.
    """
    created = time.time()
    kube.put(sim.wf)
    rows: list[StepRow] = []
    while sim.phase == "Running":
        await asyncio.sleep(tick)
        started = sim.tick()
        kube.put(sim.wf)
        for pod in started:
            inputs = pod.inputs + [str(pod.parameters[n]) for n in read_params if n in pod.parameters]
            if inputs:
                rows.append(await _read_step(cluster, pod.path, inputs, read))
            for uri in pod.outputs if write else ():
                await asyncio.to_thread(write, uri)
    return PipelineRun(created, rows, time.time())


async def _read_step(
    cluster: PcCluster, path: tuple[str, ...], inputs: list[str], read: Callable[[str], int]
) -> StepRow:
    def served() -> tuple[float, float]:
        return cluster.worker_sum("pipecache_cache_hit_bytes_total"), cluster.worker_sum(
            "pipecache_cache_miss_bytes_total"
        )

    t = time.time()
    hit0, miss0 = await asyncio.to_thread(served)
    for uri in inputs:
        await asyncio.to_thread(read, uri)
    hit1, miss1 = await asyncio.to_thread(served)
    total = (hit1 - hit0) + (miss1 - miss0)
    step = path[-2] if path[-1] == "executor" else path[-1]
    return StepRow(step, t, inputs, (hit1 - hit0) / total if total else 0.0)


__all__ = [
    "REAL_IMPORTER",
    "RunningWatcher",
    "jobs_for",
    "metric_sum",
    "run_pipeline",
    "until",
    "watcher",
    "watcher_process",
]

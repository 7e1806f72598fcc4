"""The watcher service against an in-process Kubernetes API server and a real cluster.

The API server (kubeapi.py) speaks the real list/watch protocol; workflows come from the KFP
fixture files and advance the way Argo advances them (argosim.py). Preloads are checked on the
real master's job list.
"""

from __future__ import annotations

import copy
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from argosim import ArgoSim
from cluster import PcCluster
from kubeapi import FakeKubeApi
from pipecache.client import connect
from pipecache.watcher.hits import StepReads
from pipecache.watcher.scheduler import Release, RunEnded, StepStarted, Submit
from watcherrun import REAL_IMPORTER, jobs_for, run_pipeline, until, watcher, watcher_process

REPO = Path(__file__).resolve().parents[2]
SHARED_KFP = REPO.parent / "shared" / "fixtures" / "kfp"
OWN_KFP = REPO / "tests" / "fixtures" / "kfp"
NS = "kubeflow-user"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def load_yaml(path: Path, replace: dict[str, str] | None = None) -> dict[str, Any]:
    text = path.read_text()
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


def real_importer(bucket: str, name: str) -> dict[str, Any]:
    """The KFP importer pipeline as compiled, its datasets moved from GCS to an S3 bucket."""
    path = SHARED_KFP / REAL_IMPORTER
    if not path.is_file():
        pytest.skip(
            f"real KFP fixtures not found at {SHARED_KFP} (a plain clone has only tests/fixtures/kfp)"
        )
    wf = load_yaml(path, {"gs://ml-pipeline-playground/": f"s3://{bucket}/"})
    wf["metadata"] = {"name": name, "namespace": NS, "labels": {"pipeline/runid": str(uuid.uuid4())}}
    return wf


def own(name: str, wf_name: str, replace: dict[str, str] | None = None) -> dict[str, Any]:
    wf = load_yaml(OWN_KFP / name, replace)
    wf["metadata"] = {"name": wf_name, "namespace": NS}
    wf.pop("status", None)
    return wf


@pytest.fixture
def s3(moto_server: str):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")


def seed(s3, bucket: str, objects: dict[str, bytes]) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket=bucket)
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)


@pytest.fixture
async def kube() -> AsyncIterator[FakeKubeApi]:
    api = await FakeKubeApi().start()
    try:
        yield api
    finally:
        await api.stop()


async def put_and_tick(kube: FakeKubeApi, sim: ArgoSim, ticks: int) -> float:
    for _ in range(ticks):
        sim.tick()
    kube.put(sim.wf)
    return time.time()


# ---- preloading ---------------------------------------------------------------------------


async def test_real_importer_pipeline_preloads_in_order(
    kube: FakeKubeApi,
    cluster: PcCluster,
    s3,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    bucket = unique("imp")
    seed(s3, bucket, {"shakespeare1.txt": b"a" * 5000, "shakespeare2.txt": b"b" * 7000})
    name = unique("pipeline-with-importer")
    sim = ArgoSim(real_importer(bucket, name))
    async with watcher(kube, cluster.master, tmp_path) as w:
        created = time.time()
        kube.put(sim.wf)
        [first] = await until(lambda: jobs_for(cluster.master, f"s3://{bucket}/"), what="first job")
        # The importer (distance 1) reads shakespeare1, and so does train (distance 2): one job,
        # at the importer's priority, within a second of the run appearing.
        assert first.paths == [f"s3://{bucket}/shakespeare1.txt"] and first.priority == 2
        assert first.created - created < 1.0
        # importer-2 is 3 hops away until the importer runs; then it is within the lookahead.
        changed = await put_and_tick(kube, sim, 3)
        jobs = await until(
            lambda: _at_least(jobs_for(cluster.master, f"s3://{bucket}/"), 2), what="second job"
        )
        assert jobs[1].paths == [f"s3://{bucket}/shakespeare2.txt"] and jobs[1].priority == 1
        assert jobs[1].created - changed < 1.0
        await until(lambda: len(kube.events_for(name, "PreloadComplete")) == 2, what="PreloadComplete events")
        started = kube.events_for(name, "PreloadStarted")
        assert [e["involvedObject"]["kind"] for e in started] == ["Workflow", "Workflow"]
        assert started[0]["involvedObject"]["uid"] == kube.store[(NS, name)]["metadata"]["uid"]
        assert "shakespeare1.txt" in started[0]["message"] and started[0]["type"] == "Normal"
        assert await w.metric("pipecache_watcher_jobs_completed_total") == 2
        sim.run_to_end()
        kube.put(sim.wf)
        await until(
            lambda: w.metric("pipecache_watcher_runs_ended_total", outcome="succeeded"), what="run end"
        )
        assert await w.metric("pipecache_watcher_jobs_submitted_total") == 2


async def _at_least(jobs: Any, n: int) -> Any:
    found = await jobs
    return found if len(found) >= n else None


@pytest.mark.parametrize("compressed", [False, True], ids=["nodes", "compressed-nodes"])
async def test_every_input_source(
    kube: FakeKubeApi, cluster: PcCluster, tmp_path: Path, compressed: bool
) -> None:
    tag = uuid.uuid4().hex[:8]
    # Our own KFP v2 workflow, with its buckets renamed so that this test's jobs are its own.
    names = ("datasets", "models", "shards", "pipeline-root", "mlpipeline")
    wf = own("v2_compiled.yaml", unique("prep-train"), {f"{n}/": f"{n}-{tag}/" for n in names})
    sim = ArgoSim(wf, pipeline_root=f"s3://pipeline-root-{tag}", compressed=compressed)
    prefixes = tuple(f"s3://{n}-{tag}/" for n in names)
    async with watcher(kube, cluster.master, tmp_path):
        kube.put(sim.wf)
        await until(lambda: _at_least(jobs_for(cluster.master, *prefixes), 3), what="first jobs")
        for _ in range(8):  # prepare runs; its driver tells where its features go
            await put_and_tick(kube, sim, 1)
        jobs = await until(
            lambda: _paths_include(
                cluster.master,
                prefixes,
                f"s3://pipeline-root-{tag}/{wf['metadata']['name']}/prepare/features",
            ),
            what="upstream job",
        )
    paths = [p for j in jobs for p in j.paths]
    assert f"s3://datasets-{tag}/labels.csv" in paths  # importer constant
    assert f"s3://models-{tag}/base-v1/" in paths  # importer runtime parameter
    assert f"s3://datasets-{tag}/raw-2026-11/" in paths  # pipeline parameter from runtime-config
    assert f"s3://mlpipeline-{tag}/vocab.txt" in paths  # minio:// parameter, loaded as S3
    assert f"s3://datasets-{tag}/extra/a.parquet" in paths  # pipecache.io/inputs annotation
    assert len(paths) == len(set(paths)), "a URI was submitted twice"
    # The first observation: the two importers (next), then prepare (two hops), nearest first.
    first = [(j.paths, j.priority) for j in sorted(jobs, key=lambda j: j.created)[:3]]
    assert first == [
        ([f"s3://datasets-{tag}/labels.csv"], 2),
        ([f"s3://models-{tag}/base-v1/"], 2),
        (
            [
                f"s3://datasets-{tag}/raw-2026-11/",
                f"s3://mlpipeline-{tag}/vocab.txt",
                f"s3://datasets-{tag}/extra/a.parquet",
                f"s3://datasets-{tag}/extra/b.parquet",
            ],
            1,
        ),
    ]


async def _paths_include(master: str, prefixes: tuple[str, ...], wanted: str) -> Any:
    jobs = await jobs_for(master, *prefixes)
    return jobs if any(wanted in j.paths for j in jobs) else None


async def test_kfp_v1_upstream_artifacts_and_annotation(
    kube: FakeKubeApi, cluster: PcCluster, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    wf = own("v1_running.yaml", unique("churn-v1"), {"datasets": f"datasets-{tag}"})
    sim = ArgoSim(wf, bucket=f"mlpipeline-{tag}")
    name = wf["metadata"]["name"]
    async with watcher(kube, cluster.master, tmp_path):
        kube.put(sim.wf)
        jobs = await until(lambda: jobs_for(cluster.master, f"s3://datasets-{tag}/"), what="v1 job")
        # download's pipeline parameter and its input artifact (an S3 location in the template)
        assert jobs[0].paths == [f"s3://datasets-{tag}/churn/extra.csv", f"s3://datasets-{tag}/churn/raw.csv"]
        await put_and_tick(kube, sim, 2)  # download ran: its artifact is in the repository
        upstream = f"s3://mlpipeline-{tag}/artifacts/{name}/download/download-data.tgz"
        await until(
            lambda: _paths_include(cluster.master, (f"s3://mlpipeline-{tag}/",), upstream), what="upstream"
        )
    all_paths = [p for j in await jobs_for(cluster.master, f"s3://datasets-{tag}/") for p in j.paths]
    assert f"s3://datasets-{tag}/churn/holdout/" in all_paths  # the train template's annotation


# ---- the watch protocol -------------------------------------------------------------------


@pytest.mark.parametrize("gone", ["event", "http"])
async def test_410_gone_lists_again(cluster: PcCluster, tmp_path: Path, gone: str) -> None:
    kube = await FakeKubeApi(gone=gone).start()
    try:
        async with watcher(kube, cluster.master, tmp_path) as w:
            await until(lambda: kube.watches_served, what="a watch")
            assert await kube.drop_watches() == 1
            tag = uuid.uuid4().hex[:8]
            # While the watcher is away, a run appears and the history it would resume from is lost.
            kube.put(own("v1_running.yaml", unique("late"), {"s3://datasets/": f"s3://late-{tag}/"}))
            kube.compact()
            await until(lambda: jobs_for(cluster.master, f"s3://late-{tag}/"), what="job after re-list")
            assert await w.metric("pipecache_watcher_watch_relists_total") >= 1
            lists = [r for r in kube.requests if "/workflows" in r and "watch=" not in r]
            assert len(lists) >= 2
    finally:
        await kube.stop()


async def test_dropped_connection_reconnects_and_resumes(
    kube: FakeKubeApi, cluster: PcCluster, tmp_path: Path
) -> None:
    async with watcher(kube, cluster.master, tmp_path, namespaces=(NS,)) as w:
        await until(lambda: kube.watches_served, what="a watch")
        served = kube.watches_served
        await kube.drop_watches()
        tag = uuid.uuid4().hex[:8]
        kube.put(own("v1_running.yaml", unique("after-drop"), {"s3://datasets/": f"s3://drop-{tag}/"}))
        await until(lambda: jobs_for(cluster.master, f"s3://drop-{tag}/"), what="job after reconnect")
        assert kube.watches_served > served
        assert await w.metric("pipecache_watcher_watch_reconnects_total") >= 1
        # Resumed from its version, not re-listed; and watched only its namespace.
        assert await w.metric("pipecache_watcher_watch_relists_total") == 0
        assert all(f"/namespaces/{NS}/workflows" in r for r in kube.requests if "workflows" in r)
        assert any("allowwatchbookmarks=true" in r.lower() for r in kube.requests)


async def test_hostile_watch_lines_are_skipped_and_errors_reconnect(
    kube: FakeKubeApi, cluster: PcCluster, tmp_path: Path
) -> None:
    async with watcher(kube, cluster.master, tmp_path) as w:
        await until(lambda: kube.watches_served, what="a watch")
        for line in (b"not json\n", b'{"type": "ADDED", "object": "x"}\n', b"[1, 2]\n", b"{}\n"):
            assert await kube.inject(line) == 1
        tag = uuid.uuid4().hex[:8]
        kube.put(own("v1_running.yaml", unique("after-junk"), {"s3://datasets/": f"s3://junk-{tag}/"}))
        await until(lambda: jobs_for(cluster.master, f"s3://junk-{tag}/"), what="job after junk lines")
        assert await w.metric("pipecache_watcher_watch_reconnects_total") == 0
        error = {
            "type": "ERROR",
            "object": {"kind": "Status", "code": 500, "message": "etcdserver: leader changed"},
        }
        await kube.inject(json.dumps(error).encode() + b"\n")
        await until(
            lambda: w.metric("pipecache_watcher_watch_reconnects_total", error="ApiException"), what="retry"
        )
        kube.put(own("v1_running.yaml", unique("after-error"), {"s3://datasets/": f"s3://err-{tag}/"}))
        await until(lambda: jobs_for(cluster.master, f"s3://err-{tag}/"), what="job after the error")


# ---- ends of runs -------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["failed", "deleted"])
async def test_failed_or_deleted_run_cancels_its_jobs(
    kube: FakeKubeApi,
    cluster: PcCluster,
    s3,
    tmp_path: Path,
    how: str,  # type: ignore[no-untyped-def]
) -> None:
    bucket = unique("cancel")
    # Enough blocks that the job is still running when the run ends (the test master
    # dispatches 16 blocks per worker per heartbeat).
    seed(s3, bucket, {f"data/{i:03d}": bytes(2000) for i in range(150)})
    wf = own(
        "v1_running.yaml",
        unique("doomed"),
        {"s3://datasets/churn/extra.csv": f"s3://{bucket}/data/", "datasets": bucket},
    )
    async with watcher(kube, cluster.master, tmp_path) as w:
        kube.put(wf)
        await until(lambda: jobs_for(cluster.master, f"s3://{bucket}/data/"), what="job")
        await until(lambda: kube.events_for(wf["metadata"]["name"], "PreloadStarted"), what="PreloadStarted")
        if how == "failed":
            ended = copy.deepcopy(kube.store[(NS, wf["metadata"]["name"])])
            ended["status"] = {"phase": "Failed"}
            kube.put(ended)
        else:
            kube.delete(NS, wf["metadata"]["name"])
        [job] = await until(
            lambda: _job_state(cluster.master, f"s3://{bucket}/data/", "cancelled"),
            timeout=5,
            what="cancelled job",
        )
        assert job.objects_done < 150
        assert await w.metric("pipecache_watcher_jobs_cancelled_total") >= 1
        # The end is counted after the holds are released (the cancels come first).
        await until(lambda: w.metric("pipecache_watcher_runs_ended_total", outcome=how), what="run end")
        assert await w.metric("pipecache_watcher_runs_ended_total", outcome=how) == 1


async def _job_state(master: str, prefix: str, state: str) -> Any:
    jobs = await jobs_for(master, prefix)
    return jobs if jobs and all(j.state == state for j in jobs) else None


async def test_unplannable_workflow_is_counted_not_fatal(
    kube: FakeKubeApi, cluster: PcCluster, tmp_path: Path
) -> None:
    async with watcher(kube, cluster.master, tmp_path) as w:
        kube.put(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Workflow",
                "metadata": {"name": "junk", "namespace": NS},
                "spec": {"templates": "x"},
            }
        )
        await until(lambda: w.metric("pipecache_watcher_plan_errors_total"), what="plan error")
        tag = uuid.uuid4().hex[:8]
        kube.put(own("v1_running.yaml", unique("fine"), {"s3://datasets/": f"s3://fine-{tag}/"}))
        await until(lambda: jobs_for(cluster.master, f"s3://fine-{tag}/"), what="job after junk")


async def holds_of(master: str, run: str) -> dict[str, Any]:
    async with connect(master) as pc:
        return {h.name: h for h in await pc.holds() if h.name.startswith(f"kfp:{NS}/{run}/")}


async def test_holds_protect_until_each_step_ends(
    kube: FakeKubeApi,
    cluster: PcCluster,
    s3,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    bucket = unique("held")
    seed(s3, bucket, {"shakespeare1.txt": b"x" * 3000, "shakespeare2.txt": b"y" * 3000})
    name = unique("pipeline-with-importer")
    sim = ArgoSim(real_importer(bucket, name))
    one = [f"s3://{bucket}/shakespeare1.txt"]
    async with watcher(kube, cluster.master, tmp_path):
        kube.put(sim.wf)
        # importer loads shakespeare1 into its hold; train (2 hops) protects the same data.
        holds = await until(lambda: _with(holds_of(cluster.master, name), 2), what="two holds")
        assert {n: (h.kind, h.paths) for n, h in holds.items()} == {
            f"kfp:{NS}/{name}/importer": ("protect", one),
            f"kfp:{NS}/{name}/train": ("protect", one),
        }
        await put_and_tick(kube, sim, 4)  # the importer ran and finished; train runs
        # The importer's hold goes and importer-2's comes with the same status change, one
        # request after the other: wait for both, not for the moment between them.
        holds = await until(
            lambda: _settled(
                holds_of(cluster.master, name), f"kfp:{NS}/{name}/importer", f"kfp:{NS}/{name}/importer-2"
            ),
            what="importer released, importer-2 protected",
        )
        assert f"kfp:{NS}/{name}/train" in holds
        sim.run_to_end()
        kube.put(sim.wf)
        await until(lambda: _none(holds_of(cluster.master, name)), what="every hold released at the end")


async def _with(holds: Any, n: int) -> Any:
    found = await holds
    return found if len(found) >= n else None


async def _without(holds: Any, name: str) -> Any:
    found = await holds
    return found if name not in found else None


async def _settled(holds: Any, gone: str, there: str) -> Any:
    found = await holds
    return found if gone not in found and there in found else None


async def _none(holds: Any) -> bool:
    return not await holds


# ---- end to end ---------------------------------------------------------------------------


async def test_simulated_steps_first_reads_are_cache_hits(
    kube: FakeKubeApi,
    cluster: PcCluster,
    s3,
    gw,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    bucket = unique("e2e")
    seed(s3, bucket, {"shakespeare1.txt": b"to be or not " * 40000, "shakespeare2.txt": b"a rose " * 90000})
    name = unique("pipeline-with-importer")
    sim = ArgoSim(real_importer(bucket, name))
    async with watcher_process(kube, cluster.master, tmp_path) as w:
        run = await run_pipeline(kube, sim, cluster, _gateway_reader(gw), tick=0.6)
        await until(
            lambda: w.metric("pipecache_watcher_runs_ended_total", outcome="succeeded"), what="run end"
        )
        # importer, train, importer-2, train-2: each read its input once, and all from the cache.
        assert [r.step for r in run.steps] == ["importer", "train", "importer-2", "train-2"]
        assert [r.hit_ratio for r in run.steps] == [1.0, 1.0, 1.0, 1.0]
        assert await w.metric("pipecache_watcher_late_steps_total") == 0
        assert await w.metric("pipecache_watcher_preload_lead_seconds_count") >= 2
        # What the watcher can tell on its own: every preloaded block was resident at each start.
        starts = await w.metric("pipecache_watcher_step_resident_ratio_count")
        assert starts == 4 and await w.metric("pipecache_watcher_step_resident_ratio_sum") == starts
        # What the workers measured: every read of the steps' held inputs was a hit.
        run = {"namespace": NS, "run": name}
        assert await w.metric("pipecache_watcher_run_hit_ratio", **run) == 1.0
        reads = await w.metric("pipecache_watcher_run_reads_total", **run)
        assert reads >= 4 and await w.metric("pipecache_watcher_run_hits_total", **run) == reads
        assert await w.metric("pipecache_watcher_step_hit_ratio_count") == 4
        assert await w.metric("pipecache_watcher_step_hit_ratio_sum") == 4
    # The --timeline file: the two preloads, the four step starts, the end of the run.
    kinds = [
        (r["action"], r.get("step"))
        for r in w.timeline
        if r["action"] in ("Submit", "StepStarted", "RunEnded")
    ]
    assert kinds == [
        ("Submit", "importer"),
        ("StepStarted", "importer"),
        ("Submit", "importer-2"),
        ("StepStarted", "train"),
        ("StepStarted", "importer-2"),
        ("StepStarted", "train-2"),
        ("RunEnded", None),
    ]
    # Each step's measured hit ratio, read just before its hold was released.
    measured = {r["step"]: r["ratio"] for r in w.timeline if r["action"] == "StepReads"}
    assert measured == dict.fromkeys(["importer", "train", "importer-2", "train-2"], 1.0)


async def test_a_step_whose_input_left_the_cache_misses(
    kube: FakeKubeApi,
    cluster: PcCluster,
    s3,
    gw,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    bucket = unique("miss")
    seed(s3, bucket, {"shakespeare1.txt": b"to be " * 250000, "shakespeare2.txt": b"a rose " * 30000})
    name = unique("pipeline-with-importer")
    sim = ArgoSim(real_importer(bucket, name))
    one = f"s3://{bucket}/shakespeare1.txt"
    async with watcher(kube, cluster.master, tmp_path) as w:
        kube.put(sim.wf)
        await until(lambda: kube.events_for(name, "PreloadComplete"), what="first preload")
        # The importer's input is preloaded, then dropped (the hold stays): its first reads miss.
        async with connect(cluster.master) as pc:
            assert (await pc.free(one, force=True)).freed == 2
            ids = [(await pc.stat(bucket, "shakespeare1.txt")).block_id(i) for i in range(2)]
            await until(lambda: _gone(pc, ids), what="blocks dropped")
        run = await run_pipeline(kube, sim, cluster, _gateway_reader(gw), tick=0.6)
        await until(lambda: w.metric("pipecache_watcher_runs_ended_total", outcome="succeeded"), what="end")
        # The workers' own view: the importer missed every block, train (after it) hit them all.
        assert [r.step for r in run.steps[:2]] == ["importer", "train"]
        assert [r.hit_ratio for r in run.steps[:2]] == [0.0, 1.0]
        measured = {a.step: (a.reads, a.hits) for _, a in w.actions if isinstance(a, StepReads)}
        assert measured["importer"][1] == 0 < measured["importer"][0]  # every read a miss
        # train's hold names the same blocks: it saw the importer's misses, then its own hits.
        assert 0 < measured["train"][1] < measured["train"][0]
        labels = {"namespace": NS, "run": name}
        ratio = await w.metric("pipecache_watcher_run_hit_ratio", **labels)
        reads = await w.metric("pipecache_watcher_run_reads_total", **labels)
        hits = await w.metric("pipecache_watcher_run_hits_total", **labels)
        assert 0 < ratio < 1 and ratio == pytest.approx(hits / reads)


async def test_a_running_steps_reads_are_measured_before_it_ends(
    kube: FakeKubeApi,
    cluster: PcCluster,
    s3,
    gw,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    bucket = unique("live")
    seed(s3, bucket, {"shakespeare1.txt": b"x" * 3000, "shakespeare2.txt": b"y" * 3000})
    name = unique("pipeline-with-importer")
    sim = ArgoSim(real_importer(bucket, name))
    labels = {"namespace": NS, "run": name}
    async with watcher(kube, cluster.master, tmp_path, hits_interval=0.2) as w:
        kube.put(sim.wf)
        await until(lambda: kube.events_for(name, "PreloadComplete"), what="first preload")
        while not any(p.path[-1] == "importer" for p in sim.tick()):
            pass
        kube.put(sim.wf)  # the importer runs, and stays running: its hold is not released
        await until(lambda: any(isinstance(a, StepStarted) for _, a in w.actions), what="start")
        _gateway_reader(gw)(f"s3://{bucket}/shakespeare1.txt")
        await until(lambda: w.metric("pipecache_watcher_run_reads_total", **labels), what="live count")
        assert await w.metric("pipecache_watcher_run_hit_ratio", **labels) == 1.0
        assert not any(isinstance(a, (Release, StepReads)) for _, a in w.actions)


async def _gone(pc: Any, ids: list[str]) -> bool:
    return not await pc.locate(ids)


async def test_upstream_outputs_are_cache_hits_for_the_next_steps(
    kube: FakeKubeApi,
    cluster: PcCluster,
    s3,
    gw,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    tag = uuid.uuid4().hex[:8]
    names = ("datasets", "models", "shards", "pipeline-root", "mlpipeline")
    wf = own("v2_compiled.yaml", unique("prep-train"), {f"{n}/": f"{n}-{tag}/" for n in names})
    seed(s3, f"datasets-{tag}", {"labels.csv": b"id,label\n" * 30000})
    seed(s3, f"pipeline-root-{tag}", {})
    sim = ArgoSim(wf, pipeline_root=f"s3://pipeline-root-{tag}")
    async with watcher(kube, cluster.master, tmp_path):
        run = await run_pipeline(kube, sim, cluster, _gateway_reader(gw), tick=0.6, write=_s3_writer(s3))
    reads = {r.step: (r.inputs, r.hit_ratio) for r in run.steps}
    root = f"s3://pipeline-root-{tag}/{wf['metadata']['name']}"
    # train and report read what prepare wrote (preloaded once prepare finished); the
    # importer, prepare and audit read the imported labels.
    assert reads["train"] == ([f"{root}/prepare/features"], 1.0)
    assert reads["report"] == ([f"{root}/prepare/features"], 1.0)
    assert {step: ratio for step, (_, ratio) in reads.items()} == dict.fromkeys(
        ["importer", "prepare", "audit", "train", "report"], 1.0
    )


async def test_a_loops_steps_get_their_items_preloaded(
    kube: FakeKubeApi,
    cluster: PcCluster,
    s3,
    gw,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    tag = uuid.uuid4().hex[:8]
    names = ("datasets", "models", "shards", "pipeline-root", "mlpipeline")
    wf = own("v2_compiled.yaml", unique("loop"), {f"{n}/": f"{n}-{tag}/" for n in names})
    seed(s3, f"datasets-{tag}", {"labels.csv": b"id,label\n" * 1000})
    shards = {f"part-{i}.parquet": os.urandom(200_000 + i) for i in range(2)}
    seed(s3, f"shards-{tag}", shards)
    seed(s3, f"pipeline-root-{tag}", {})
    sim = ArgoSim(wf, pipeline_root=f"s3://pipeline-root-{tag}")
    uris = tuple(f"s3://shards-{tag}/{k}" for k in shards)
    async with watcher(kube, cluster.master, tmp_path) as w:
        # for-loop-1 runs read-shard once per shard (three Argo levels; withSequence over the
        # loop's items); each iteration reads the shard its loop item names.
        run = await run_pipeline(
            kube, sim, cluster, _gateway_reader(gw), tick=0.6, write=_s3_writer(s3), read_params=("path",)
        )
        await until(lambda: any(isinstance(a, RunEnded) for _, a in w.actions), what="run end")
    iterations = [r for r in run.steps if r.step == "read-shard"]
    assert sorted(r.inputs[0] for r in iterations) == list(uris)
    assert [r.hit_ratio for r in iterations] == [1.0, 1.0]
    # Both items were preloaded for the step, in one job, before its iterations started.
    [submit] = [(t, a) for t, a in w.actions if isinstance(a, Submit) and a.step == "read-shard"]
    assert submit[1].uris == uris
    [start] = [t for t, a in w.actions if isinstance(a, StepStarted) and a.step == "read-shard"]
    assert submit[0] < start
    [measured] = [a for _, a in w.actions if isinstance(a, StepReads) and a.step == "read-shard"]
    assert measured.reads >= 2 and measured.ratio == 1.0


def _s3_writer(s3) -> Callable[[str], None]:  # type: ignore[no-untyped-def]
    def write(uri: str) -> None:  # a step writing its output artifact straight to S3
        bucket, key = uri.split("://", 1)[1].split("/", 1)
        s3.put_object(Bucket=bucket, Key=key, Body=os.urandom(300_000))

    return write


def _gateway_reader(gw) -> Callable[[str], int]:  # type: ignore[no-untyped-def]
    def read(uri: str) -> int:
        bucket, key = uri.split("://", 1)[1].split("/", 1)
        return len(gw.get_object(Bucket=bucket, Key=key)["Body"].read())

    return read

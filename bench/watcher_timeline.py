"""Timeline of one Kubeflow run under the watcher: run created, each preload, each step start,
each step's measured hit ratio.

Runs the KFP importer pipeline from the shared fixtures (its two datasets moved from GCS to an
S3 bucket of the local under-store) through the in-process Kubernetes API server and Argo
simulator of the tests, with a real master, two workers and the gateway. Every step pod reads
its inputs through the gateway when it starts. Two figures per step: the hit ratio the watcher
measured (the workers' count of the block reads of the step's held inputs, read just before
its hold is released: ``pipecache_watcher_step_hit_ratio``), and, as a cross-check, the share
of the bytes all workers served while the pod read that came from a cache tier.

    .venv/bin/python bench/watcher_timeline.py [--tick 2] [--mib 64]

Writes bench/results/watcher_timeline.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "functional"))

import yaml  # noqa: E402
from argosim import ArgoSim  # noqa: E402
from common import ACCESS_KEY, RESULTS, ROOT, SECRET_KEY, PcCluster  # noqa: E402
from kubeapi import FakeKubeApi  # noqa: E402
from pipecache.watcher.hits import Reads, StepReads  # noqa: E402
from pipecache.watcher.scheduler import Notify, Protect, Release, RunEnded, StepStarted, Submit  # noqa: E402
from watcherrun import REAL_IMPORTER, PipelineRun, run_pipeline, until, watcher  # noqa: E402

FIXTURE = ROOT.parent / "shared" / "fixtures" / "kfp" / REAL_IMPORTER
BUCKET = "playground"


def gateway_reader(url: str):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )

    def read(uri: str) -> int:
        bucket, key = uri.split("://", 1)[1].split("/", 1)
        return len(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    return read


async def record(
    cluster: PcCluster, tmp: Path, tick: float
) -> tuple[PipelineRun, list[tuple[float, str]], Reads]:
    wf = yaml.safe_load(FIXTURE.read_text().replace("gs://ml-pipeline-playground/", f"s3://{BUCKET}/"))
    wf["metadata"] = {"name": "pipeline-with-importer-x7k2q", "namespace": "kubeflow-user"}
    sim = ArgoSim(wf)
    kube = await FakeKubeApi().start()
    try:
        async with watcher(kube, cluster.master, tmp) as w:
            run = await run_pipeline(kube, sim, cluster, gateway_reader(cluster.gateway), tick=tick)
            await until(lambda: any(isinstance(a, RunEnded) for _, a in w.actions), what="run end")
            notes = [(t, describe(a)) for t, a in w.actions if describe(a)]
            measured = sum(
                (Reads(a.reads, a.hits) for _, a in w.actions if isinstance(a, StepReads)), Reads()
            )
    finally:
        await kube.stop()
    return run, notes, measured


def describe(action: object) -> str:
    if isinstance(action, Submit):
        return (
            f"preload submitted for step `{action.step}` (distance {action.distance}, "
            f"priority {action.priority}, hold `{action.hold}`): {', '.join(action.uris)}"
        )
    if isinstance(action, Notify) and action.reason in ("PreloadComplete", "PreloadFailed"):
        return f"{action.reason}: {action.message}"
    if isinstance(action, StepStarted):
        lead = (
            f"inputs resident {action.lead:.2f} s ago" if action.lead is not None else "inputs not resident"
        )
        return f"watcher sees step `{action.step}` start ({lead})"
    if isinstance(action, Protect):
        return f"hold `{action.hold}` protects {', '.join(action.uris)} (loaded for another step)"
    if isinstance(action, Release):
        return f"hold `{action.hold}` released{' (evict first)' if action.evict_first else ''}"
    if isinstance(action, StepReads):
        ratio = "-" if action.ratio is None else f"{action.ratio:.2f}"
        return (
            f"step `{action.step}` measured hit ratio **{ratio}** "
            f"({action.hits} of {action.reads} block reads of its held inputs were hits)"
        )
    if isinstance(action, RunEnded):
        return f"run ended ({action.outcome})"
    return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tick", type=float, default=2.0, help="seconds per Argo status step")
    ap.add_argument("--mib", type=int, default=64, help="size of each dataset in MiB")
    args = ap.parse_args()
    if not FIXTURE.is_file():
        sys.exit(f"the KFP fixtures are not at {FIXTURE}")
    with tempfile.TemporaryDirectory(prefix="pc-timeline-") as d:
        tmp = Path(d)
        ufs = tmp / "ufs" / BUCKET
        ufs.mkdir(parents=True)
        for name in ("shakespeare1.txt", "shakespeare2.txt"):
            (ufs / name).write_bytes(os.urandom(args.mib << 20))
        cluster = PcCluster((tmp / "ufs").as_uri(), tmp / "data", block_size="4MiB", memory="1GiB")
        cluster.start()
        try:
            run, notes, measured = asyncio.run(record(cluster, tmp, args.tick))
        finally:
            cluster.stop()
    events = [(run.created, "run created (workflow ADDED)")] + notes
    events += [
        (
            r.started,
            f"step `{r.step}` pod starts, reads {', '.join(r.inputs)} "
            f"(share of bytes served from cache: {r.hit_ratio:.2f})",
        )
        for r in run.steps
    ]
    lines = [
        "# Watcher timeline: KFP importer pipeline",
        "",
        f"`{' '.join(['bench/watcher_timeline.py', *sys.argv[1:]])}`: two {args.mib} MiB datasets, "
        f"one Argo status step every {args.tick} s, lookahead 2, {time.strftime('%Y-%m-%d')}.",
        "",
        "| t (s) | what |",
        "|---:|---|",
    ]
    lines += [f"| {t - run.created:.2f} | {text} |" for t, text in sorted(events, key=lambda e: e[0])]
    ratio = "-" if measured.ratio is None else f"{measured.ratio:.2f}"
    lines += [
        "",
        f"Per-run hit ratio measured by the workers: **{ratio}** ({measured.hits} of {measured.reads} "
        "block reads; a block read while two steps' holds name it counts for both).",
    ]
    out = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "watcher_timeline.md").write_text(out)
    print(out)


if __name__ == "__main__":
    main()

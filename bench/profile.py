"""Where a small-object cache hit's time goes: py-spy on the S3 endpoint under wrk.

    python bench/profile.py [--seconds 10] [--small 2000]

Runs a one-worker cluster whose worker also serves S3 (``worker --s3-port``),
warms 64 KiB objects, then samples the worker process with py-spy while wrk
reads them at random over 16 connections. Each sample is put in the bucket of
the innermost frame that names one (socket writes, SigV4, S3 parsing, the cache
lookup, metrics, aiohttp's HTTP machinery, the event loop), and the table goes to
bench/results/profile.{json,md}: the profile behind the small-object figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, bench_cluster, free_port, need, presigner, wrk  # noqa: E402
from hits import TRUST_AN_HOUR, make_data, paths_file, warm  # noqa: E402

BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("socket writes (send syscalls, loopback delivery)", ("http_writer.py", "selector_events.py")),
    ("SigV4 verification", ("gateway/s3/sigv4.py", "hmac.py", "hashlib")),
    ("S3 request parsing, routing, response headers", ("gateway/",)),
    ("cache: metadata lookup, block read", ("client/", "worker/", "tiering/")),
    ("metrics", ("prometheus_client",)),
    ("aiohttp HTTP machinery (parsing, request objects, tasks)",
     ("aiohttp/", "yarl/", "multidict", "asyncio/tasks.py", "asyncio/events.py")),
]  # fmt: skip
LOOP = "uvloop's event loop in C (socket reads, accepts, callbacks)"


def bucket_of(frames: list[str]) -> str:
    # py-spy leaves out idle samples: a sample whose innermost Python frame is the
    # loop's run() is the loop's own C code at work.
    if "runners.py" in frames[-1] or "run_forever" in frames[-1]:
        return LOOP
    for frame in reversed(frames):  # innermost first
        for name, marks in BUCKETS:
            if any(m in frame for m in marks):
                return name
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--small", type=int, default=2000)
    a = ap.parse_args()
    need("wrk", "nginx", "curl")
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with tempfile.TemporaryDirectory(prefix="pc-profile-") as tmp:
        work = Path(tmp)
        make_data(work / "ufs", a.small)
        port = free_port()
        c = bench_cluster(
            work / "ufs", work / "c", memory="1GiB", ssd="0", s3_port=port, master_args=TRUST_AN_HOUR
        ).start()
        try:
            endpoint = f"http://127.0.0.1:{port}"
            sign = presigner(endpoint)
            urls = [sign("bench", f"small/{i:05d}.bin") for i in range(a.small)]
            warm(urls)
            pid = c.workers[0].proc.pid if c.workers[0].proc else 0
            raw = work / "samples.txt"
            sampler = subprocess.Popen(
                [spy, "record", "-p", str(pid), "-d", str(a.seconds), "-r", "200", "-f", "raw",
                 "-o", str(raw), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)
            result = wrk(endpoint, paths_file(work / "paths.txt", urls), 16, a.seconds - 1)
            sampler.wait(60)
            samples: Counter[str] = Counter()
            leaves: Counter[str] = Counter()
            for line in raw.read_text().splitlines():
                stack, _, n = line.rpartition(" ")
                frames = stack.split(";")
                samples[bucket_of(frames)] += int(n)
                leaves[frames[-1]] += int(n)
        finally:
            c.stop()
    total = sum(samples.values())
    out = {
        "rps": result.rps,
        "samples": total,
        "cpu_ms_per_request": total / 200 / a.seconds * 1000 / max(result.rps, 1),
        "buckets": {k: v / total for k, v in samples.most_common()},
        "top_frames": {k: v / total for k, v in leaves.most_common(15)},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "profile.json").write_text(json.dumps(out, indent=2))
    lines = [
        "# Profile: a 64 KiB cache hit through the worker's S3 endpoint",
        "",
        f"py-spy at 200 Hz on the worker process while wrk read {a.small} warm 64 KiB objects at random "
        f"over 16 connections: {result.rps:.0f} requests/s, about {out['cpu_ms_per_request']:.2f} ms of "
        "the worker's CPU per request.",
        "",
        "| where | share of samples |",
        "|---|---|",
        *(f"| {k} | {v:.1%} |" for k, v in out["buckets"].items()),
        "",
        "Innermost frames:",
        "",
        "| frame | share |",
        "|---|---|",
        *(f"| `{k}` | {v:.1%} |" for k, v in out["top_frames"].items()),
        "",
    ]
    (RESULTS / "profile.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

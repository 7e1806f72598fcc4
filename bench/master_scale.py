"""The master's block map at 1, 5 and 10 million blocks: memory, lookups, heartbeats.

    python bench/master_scale.py [--sizes 1,5,10] [--workers 3]

Each size runs in a fresh process (so resident memory is that size's own):
three workers register with full block reports through the real message
decoding (``RegisterRequest.unpack``), then batched ``locate`` calls of 1,000
ids and heartbeats of 10,000 added and 10,000 removed ids are timed. Writes
bench/results/master_scale.{json,md}; the target is under 200 bytes per block.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(64):016x}" for _ in range(n)]


def one(millions: float, workers: int) -> dict[str, Any]:
    import psutil
    from pipecache.client.protocol import HeartbeatRequest, LocateRequest, RegisterRequest
    from pipecache.master.state import ClusterState

    n = int(millions * 1_000_000)
    proc = psutil.Process()
    per = n // workers
    reports = [
        RegisterRequest(f"w{i}", f"http://10.0.0.{i}:9001", blocks=ids(per, i)).pack() for i in range(workers)
    ]
    gc.collect()
    state = ClusterState(worker_timeout=60)
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    for body in reports:
        state.register(RegisterRequest.unpack(body), 0.0)
    register_s = time.perf_counter() - t0
    del reports
    gc.collect()
    rss1 = proc.memory_info().rss
    blocks = state.block_count()

    some = ids(per, 0)  # worker 0's ids, regenerated (same seed)
    batches = [LocateRequest(random.sample(some, 1000)).pack() for _ in range(200)]
    t0 = time.perf_counter()
    for body in batches:
        state.locate(LocateRequest.unpack(body).ids)
    locate_rate = 200 * 1000 / (time.perf_counter() - t0)

    beats = []
    for k in range(20):
        added = ids(10_000, 1000 + k)
        removed = some[k * 10_000 : (k + 1) * 10_000]
        beats.append(HeartbeatRequest("w0", added, removed).pack())
    t0 = time.perf_counter()
    for body in beats:
        state.heartbeat(HeartbeatRequest.unpack(body), 1.0)
    beat_ms = (time.perf_counter() - t0) / len(beats) * 1000

    t0 = time.perf_counter()
    state.expire(1000.0)  # every worker silent: all blocks dropped by scans
    expire_s = time.perf_counter() - t0
    return {
        "blocks": blocks,
        "bytes_per_block": (rss1 - rss0) / blocks,
        "register_s": register_s,
        "locate_ids_per_s": locate_rate,
        "heartbeat_ms": beat_ms,
        "expire_all_s": expire_s,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,5,10", help="millions of blocks, comma-separated")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--one", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.workers)))
        return 0
    rows = []
    for size in [float(s) for s in args.sizes.split(",")]:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--workers", str(args.workers)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        row = json.loads(out)
        rows.append(row)
        print(row, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "master_scale.json").write_text(json.dumps(rows, indent=2) + "\n")
    md = [
        "# Master scale: the block map",
        "",
        f"{args.workers} workers register with full reports (real msgpack decoding); {os.cpu_count()} cores. "
        "Measured by `python bench/master_scale.py`. Target: under 200 bytes per block.",
        "",
        "| blocks | bytes per block (RSS) | register all (s) | locate (ids/s, batches of 1,000) "
        "| heartbeat of 10k+10k ids (ms) | expire every worker (s) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['blocks']:,} | {r['bytes_per_block']:.0f} | {r['register_s']:.1f} | "
            f"{r['locate_ids_per_s']:,.0f} | {r['heartbeat_ms']:.1f} | {r['expire_all_s']:.1f} |"
            for r in rows
        ),
        "",
    ]
    (RESULTS / "master_scale.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())

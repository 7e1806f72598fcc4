"""Cache hits through the gateway beside nginx serving the same bytes from the page cache.

    python bench/hits.py [--seconds 10] [--small 10000]

Scenario 1: one 256 MiB object, single stream (curl), from the memory tier and
from the SSD tier. Scenario 2: 64 KiB objects read at random with wrk at 16 and
64 connections. Both are reported as ratios to nginx measured in the same run;
results go to bench/results/hits.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, Nginx, bench_cluster, curl_speed, need, presigner, wrk  # noqa: E402

MiB = 1024 * 1024


def make_data(root: Path, small: int) -> None:
    bucket = root / "bench"
    (bucket / "small").mkdir(parents=True, exist_ok=True)
    with (bucket / "big.bin").open("wb") as f:
        for _ in range(256):
            f.write(os.urandom(MiB))
    blob = os.urandom(64 * 1024 + small)
    for i in range(small):
        (bucket / "small" / f"{i:05d}.bin").write_bytes(blob[i : i + 64 * 1024])


def warm(urls: list[str]) -> None:
    import urllib.request

    for u in urls:
        with urllib.request.urlopen(u) as r:
            while r.read(4 * MiB):
                pass


def paths_file(path: Path, urls: list[str]) -> Path:
    lines = []
    for u in urls:
        parts = urlsplit(u)
        lines.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    path.write_text("\n".join(lines) + "\n")
    return path


def run(seconds: int, small: int) -> dict[str, object]:
    need("nginx", "wrk", "curl")
    out: dict[str, object] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    with tempfile.TemporaryDirectory(prefix="pc-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx workers run as an unprivileged user
        ufs = work / "ufs"
        make_data(ufs, small)
        nginx = Nginx(ufs, work / "nginx")
        keys = [f"small/{i:05d}.bin" for i in range(small)]
        try:
            # ---- memory tier: budgets that hold everything in memory
            mem = bench_cluster(ufs, work / "mem", memory="2GiB", ssd="0").start()
            try:
                sign = presigner(mem.gateway)
                big = sign("bench", "big.bin")
                small_urls = [sign("bench", k) for k in keys]
                warm([big] + small_urls)
                out["big_memory"] = {
                    "gateway_Bps": curl_speed(big),
                    "nginx_Bps": curl_speed(f"{nginx.url}/bench/big.bin"),
                }
                gw_paths = paths_file(work / "gw_paths.txt", small_urls)
                ng_paths = paths_file(work / "ng_paths.txt", [f"{nginx.url}/bench/{k}" for k in keys])
                for conns in (16, 64):
                    g = wrk(mem.gateway, gw_paths, conns, seconds)
                    n = wrk(nginx.url, ng_paths, conns, seconds)
                    out[f"small_c{conns}"] = {"gateway": g.__dict__, "nginx": n.__dict__}
            finally:
                mem.stop()
            # ---- SSD tier: a memory tier far smaller than the object
            ssd = bench_cluster(ufs, work / "ssd", memory="16MiB", ssd="2GiB").start()
            try:
                big = presigner(ssd.gateway)("bench", "big.bin")
                warm([big])
                time.sleep(1)
                out["big_ssd"] = {
                    "gateway_Bps": curl_speed(big),
                    "nginx_Bps": curl_speed(f"{nginx.url}/bench/big.bin"),
                }
            finally:
                ssd.stop()
        finally:
            nginx.stop()
    return out


def _lat(r: dict[str, float]) -> str:
    return f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, errors {r['errors']:.0f}"


def report(res: dict[str, Any]) -> str:
    lines = [
        "# Cache hits: pipecache gateway beside nginx",
        "",
        f"Machine: {res['machine']}. One gateway process, one worker, loopback.",
        "Ratios are gateway / nginx measured in the same run.",
        "",
        "| scenario | gateway | nginx | ratio |",
        "|---|---|---|---|",
    ]
    for name in ("big_memory", "big_ssd"):
        r = res[name]
        g, n = r["gateway_Bps"] / MiB, r["nginx_Bps"] / MiB
        tier = name.split("_")[1]
        row = f"| 256 MiB object, one stream, {tier} tier | {g:.0f} MiB/s | {n:.0f} MiB/s | {g / n:.2f} |"
        lines.append(row)
    for conns in (16, 64):
        g, n = res[f"small_c{conns}"]["gateway"], res[f"small_c{conns}"]["nginx"]
        lines.append(
            f"| 64 KiB GETs, wrk {conns} connections | {g['rps']:.0f} req/s ({_lat(g)}) "
            f"| {n['rps']:.0f} req/s ({_lat(n)}) | {g['rps'] / n['rps']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--small", type=int, default=10000)
    a = ap.parse_args()
    res = run(a.seconds, a.small)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hits.json").write_text(json.dumps(res, indent=2))
    md = report(res)
    (RESULTS / "hits.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

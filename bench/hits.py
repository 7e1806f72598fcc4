"""Cache hits through the gateway beside nginx serving the same bytes from the page cache.

    python bench/hits.py [--seconds 10] [--small 10000]

Scenario 1: one 256 MiB object, single stream (curl), from the memory tier and
from the SSD tier, beside nginx serving the file from the page cache (medians of
7 reads each, the servers taking turns).
Scenario 2: 64 KiB objects read at random with wrk at 16 and 64 connections,
beside nginx proxy_cache (warm), nginx static and the aiohttp ceiling
(bench/ceiling.py). Each through the gateway process and through the S3 API
inside the worker (``worker --s3-port``). Ratios are measured in one run;
results go to bench/results/hits.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ACCESS_KEY,
    RESULTS,
    SECRET_KEY,
    Nginx,
    PcCluster,
    bench_cluster,
    curl_speeds,
    free_port,
    listening_children,
    need,
    presigner,
    wrk_cpu,
)

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


TRUST_AN_HOUR = ("--consistency", "ttl=3600")
"""The pipecache counterpart of the proxy_cache's ``proxy_cache_valid 200 1h``."""


def _ceiling(root: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("ceiling.py")), str(root), str(port)]
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not _up(url + "/bench/small/00000.bin"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the aiohttp ceiling server did not start")
        time.sleep(0.1)
    return url, proc


def _up(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def _endpoints(c: PcCluster, s3_port: int) -> dict[str, str]:
    return {"gateway": c.gateway, "worker_s3": f"http://127.0.0.1:{s3_port}"}


GATEWAY_PROCESSES = 2
"""Processes of the second gateway (``gateway --processes``), and workers of the second proxy_cache."""


def _gateway_processes(c: PcCluster) -> tuple[str, subprocess.Popen[bytes]]:
    """A second gateway in front of ``c`` with GATEWAY_PROCESSES processes, all of them listening."""
    url, proc = c.extra_gateway(
        "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--processes", str(GATEWAY_PROCESSES)
    )
    c.procs.procs.append(("gateway-processes", proc))  # stopped with the cluster
    port = int(urlsplit(url).port or 0)
    deadline = time.monotonic() + 30
    while len(listening_children(proc.pid, port)) < GATEWAY_PROCESSES:
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway processes did not all start")
        time.sleep(0.1)
    return url, proc


def _proxy_cache(ufs: Path, work: Path, name: str, backend: str, workers: int) -> Nginx:
    """nginx ``proxy_cache`` in front of ``backend``, with its own cache folder and zone."""
    return Nginx(
        ufs,
        work / name,
        workers=workers,
        http_extra=f"proxy_cache_path {work}/{name}-cache levels=1:2 keys_zone={name}:64m max_size=4g "
        "inactive=1h;",
        extra=f"location / {{ proxy_pass {backend}; proxy_cache {name}; proxy_cache_valid 200 1h; }}",
    )


def _pid(c: PcCluster, name: str) -> int:
    return next(p.pid for n, p in c.procs.procs if n == name)


def run(seconds: int, small: int) -> dict[str, object]:
    need("nginx", "wrk", "curl")
    out: dict[str, object] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    with tempfile.TemporaryDirectory(prefix="pc-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx workers run as an unprivileged user
        ufs = work / "ufs"
        make_data(ufs, small)
        nginx = Nginx(ufs, work / "nginx")
        # proxy_cache in front of the static nginx: the same role as pipecache, warmed first.
        proxy = _proxy_cache(ufs, work, "proxy", nginx.url, 1)
        proxy2 = _proxy_cache(ufs, work, "proxy2", nginx.url, GATEWAY_PROCESSES)
        ceiling_url, ceiling = _ceiling(ufs)
        keys = [f"small/{i:05d}.bin" for i in range(small)]
        try:
            # ---- memory tier: budgets that hold everything in memory
            s3_port = free_port()
            # Metadata trusted for an hour, as nginx's proxy_cache_valid below.
            mem = bench_cluster(
                ufs, work / "mem", memory="2GiB", ssd="0", s3_port=s3_port, master_args=TRUST_AN_HOUR
            ).start()
            try:
                gw2_url, gw2 = _gateway_processes(mem)
                eps = _endpoints(mem, s3_port)
                signed = {name: presigner(url) for name, url in eps.items()}
                big = {name: sign("bench", "big.bin") for name, sign in signed.items()}
                small_urls = {name: [sign("bench", k) for k in keys] for name, sign in signed.items()}
                small_urls["gateway_2p"] = [presigner(gw2_url)("bench", k) for k in keys]
                warm([big["gateway"], *(u for urls in small_urls.values() for u in urls)])
                warm([f"{proxy.url}/bench/{k}" for k in keys] + [f"{proxy2.url}/bench/{k}" for k in keys])
                speeds = curl_speeds({**big, "nginx": f"{nginx.url}/bench/big.bin"})
                out["big_memory"] = {f"{name}_Bps": bps for name, bps in speeds.items()}
                paths = {name: paths_file(work / f"{name}.txt", urls) for name, urls in small_urls.items()}
                ng_paths = paths_file(work / "ng_paths.txt", [f"/bench/{k}" for k in keys])
                # Every server: (URL, its paths, the processes wrk talks to, the rest of a hit's path).
                cluster = [_pid(mem, "worker-0"), _pid(mem, "master")]
                servers = {
                    "gateway": (eps["gateway"], paths["gateway"], [_pid(mem, "gateway")], cluster),
                    "gateway_2p": (gw2_url, paths["gateway_2p"], [gw2.pid], cluster),
                    "worker_s3": (eps["worker_s3"], paths["worker_s3"], cluster[:1], cluster[1:]),
                    "nginx_proxy_cache": (proxy.url, ng_paths, [proxy.proc.pid], [nginx.proc.pid]),
                    "nginx_proxy_cache_2w": (proxy2.url, ng_paths, [proxy2.proc.pid], [nginx.proc.pid]),
                    "nginx": (nginx.url, ng_paths, [nginx.proc.pid], []),
                    "aiohttp_ceiling": (ceiling_url, ng_paths, [ceiling.pid], []),
                }
                for conns in (16, 64):
                    out[f"small_c{conns}"] = {
                        name: wrk_cpu(url, p, conns, seconds, front, front + rest)
                        for name, (url, p, front, rest) in servers.items()
                    }
            finally:
                mem.stop()
            # ---- SSD tier: a memory tier far smaller than the object
            s3_port = free_port()
            ssd = bench_cluster(ufs, work / "ssd", memory="16MiB", ssd="2GiB", s3_port=s3_port).start()
            try:
                big = {
                    name: presigner(url)("bench", "big.bin") for name, url in _endpoints(ssd, s3_port).items()
                }
                warm([big["gateway"]])
                time.sleep(1)
                speeds = curl_speeds({**big, "nginx": f"{nginx.url}/bench/big.bin"})
                out["big_ssd"] = {f"{name}_Bps": bps for name, bps in speeds.items()}
            finally:
                ssd.stop()
        finally:
            ceiling.terminate()
            ceiling.wait(10)
            proxy2.stop()
            proxy.stop()
            nginx.stop()
    return out


SMALL = (
    "gateway",
    "gateway_2p",
    "worker_s3",
    "nginx_proxy_cache",
    "nginx_proxy_cache_2w",
    "nginx",
    "aiohttp_ceiling",
)
"""The 64 KiB table's servers, in column order."""
NAMES = {
    "gateway": "pipecache gateway, 1 process",
    "gateway_2p": f"pipecache gateway, {GATEWAY_PROCESSES} processes",
    "worker_s3": "pipecache worker S3",
    "nginx_proxy_cache": "nginx proxy_cache, 1 worker",
    "nginx_proxy_cache_2w": f"nginx proxy_cache, {GATEWAY_PROCESSES} workers",
    "nginx": "nginx static",
    "aiohttp_ceiling": "aiohttp ceiling",
}
PER_CORE = ("gateway", "gateway_2p", "worker_s3", "nginx_proxy_cache", "nginx_proxy_cache_2w")


def _lat(r: dict[str, float]) -> str:
    return f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, errors {r['errors']:.0f}"


def report(res: dict[str, Any]) -> str:
    procs = GATEWAY_PROCESSES
    lines = [
        "# Cache hits: pipecache beside nginx",
        "",
        f"Machine: {res['machine']}. One worker, loopback; every figure of a table row was measured "
        "in the same run. *gateway*: the S3 gateway process in front of the worker (one HTTP hop to "
        "it); *worker S3*: the same S3 API served inside the worker (`worker --s3-port`), reading "
        "its own blocks without a hop. *aiohttp ceiling*: `bench/ceiling.py`, aiohttp on uvloop "
        "answering from a dict with no signature check and no lookup, the floor of any Python "
        "endpoint's cost per request. 256 MiB: medians of 7 curl reads each, the three servers "
        "taking turns.",
        "",
        "| scenario | gateway | worker S3 | nginx | gateway / nginx | worker S3 / nginx |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("big_memory", "big_ssd"):
        r = res[name]
        g, w, n = (r[f"{k}_Bps"] / MiB for k in ("gateway", "worker_s3", "nginx"))
        tier = name.split("_")[1]
        lines.append(
            f"| 256 MiB object, one stream, {tier} tier | {g:.0f} MiB/s | {w:.0f} MiB/s | {n:.0f} MiB/s "
            f"| {g / n:.2f} | {w / n:.2f} |"
        )
    lines += [
        "",
        "64 KiB objects read at random with wrk (requests per second; ratios against nginx `proxy_cache`, "
        "warm, `tcp_nopush off`, `proxy_cache_valid 200 1h`; pipecache with `--consistency ttl=3600`, "
        "warm):",
        "",
        f"| connections | gateway | gateway, {procs} processes | worker S3 | nginx proxy_cache "
        f"| nginx proxy_cache, {procs} workers | nginx static | aiohttp ceiling "
        f"| gateway / proxy_cache | gateway {procs}p / proxy_cache {procs}w | worker S3 / proxy_cache "
        "| ceiling / proxy_cache |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for conns in (16, 64):
        r = res[f"small_c{conns}"]
        pc, pc2 = r["nginx_proxy_cache"]["rps"], r["nginx_proxy_cache_2w"]["rps"]
        cells = " | ".join(f"{r[k]['rps']:.0f} ({_lat(r[k])})" for k in SMALL)
        ratios = [r["gateway"]["rps"] / pc, r["gateway_2p"]["rps"] / pc2]
        ratios += [r[k]["rps"] / pc for k in ("worker_s3", "aiohttp_ceiling")]
        lines.append(f"| {conns} | {cells} | {' | '.join(f'{x:.2f}' for x in ratios)} |")
    lines += [
        "",
        "Per core: requests per CPU-second of server time (user + system, read with psutil before "
        "and after each wrk run above, every process and its children). *front*: the processes wrk "
        "talks to; *path*: every process a hit goes through (for the gateway also the worker and "
        "the master, for proxy_cache also the static nginx behind it). *cores*: front CPU-seconds "
        "per second of the run. wrk itself shares the same 2 cores.",
        "",
        "| connections | server | requests/s | cores busy (front) | requests per CPU-s, front "
        "| requests per CPU-s, path |",
        "|---|---|---|---|---|---|",
    ]
    for conns in (16, 64):
        r = res[f"small_c{conns}"]
        for k in PER_CORE:
            x = r[k]
            cores = x["front_cpu_s"] * x["rps"] / x["requests"] if x["requests"] else 0.0
            lines.append(
                f"| {conns} | {NAMES[k]} | {x['rps']:.0f} | {cores:.2f} | {x['front_rps_per_core']:.0f} "
                f"| {x['path_rps_per_core']:.0f} |"
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

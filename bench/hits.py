"""Cache hits through the gateway beside nginx serving the same bytes from the page cache.

    python bench/hits.py [--seconds 10] [--small 10000]

Scenario 1: one 256 MiB object, single stream (curl), from the memory tier and
from the SSD tier, beside nginx serving the file from the page cache.
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
    RESULTS,
    Nginx,
    PcCluster,
    bench_cluster,
    curl_speed,
    free_port,
    need,
    presigner,
    wrk,
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
        proxy = Nginx(
            ufs,
            work / "proxy",
            http_extra=f"proxy_cache_path {work}/pcache levels=1:2 keys_zone=pc:64m max_size=4g inactive=1h;",
            extra=f"location / {{ proxy_pass {nginx.url}; proxy_cache pc; proxy_cache_valid 200 1h; }}",
        )
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
                eps = _endpoints(mem, s3_port)
                signed = {name: presigner(url) for name, url in eps.items()}
                big = {name: sign("bench", "big.bin") for name, sign in signed.items()}
                small_urls = {name: [sign("bench", k) for k in keys] for name, sign in signed.items()}
                warm([big["gateway"]] + small_urls["gateway"] + small_urls["worker_s3"])
                warm([f"{proxy.url}/bench/{k}" for k in keys])
                out["big_memory"] = {f"{name}_Bps": curl_speed(url) for name, url in big.items()}
                out["big_memory"]["nginx_Bps"] = curl_speed(f"{nginx.url}/bench/big.bin")
                paths = {name: paths_file(work / f"{name}.txt", urls) for name, urls in small_urls.items()}
                ng_paths = paths_file(work / "ng_paths.txt", [f"/bench/{k}" for k in keys])
                for conns in (16, 64):
                    row = {name: wrk(eps[name], paths[name], conns, seconds).__dict__ for name in eps}
                    row["nginx_proxy_cache"] = wrk(proxy.url, ng_paths, conns, seconds).__dict__
                    row["nginx"] = wrk(nginx.url, ng_paths, conns, seconds).__dict__
                    row["aiohttp_ceiling"] = wrk(ceiling_url, ng_paths, conns, seconds).__dict__
                    out[f"small_c{conns}"] = row
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
                out["big_ssd"] = {f"{name}_Bps": curl_speed(url) for name, url in big.items()}
                out["big_ssd"]["nginx_Bps"] = curl_speed(f"{nginx.url}/bench/big.bin")
            finally:
                ssd.stop()
        finally:
            ceiling.terminate()
            ceiling.wait(10)
            proxy.stop()
            nginx.stop()
    return out


def _lat(r: dict[str, float]) -> str:
    return f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, errors {r['errors']:.0f}"


def report(res: dict[str, Any]) -> str:
    lines = [
        "# Cache hits: pipecache beside nginx",
        "",
        f"Machine: {res['machine']}. One worker, loopback; every figure of a table row was measured "
        "in the same run. *gateway*: the S3 gateway process in front of the worker (one HTTP hop to "
        "it); *worker S3*: the same S3 API served inside the worker (`worker --s3-port`), reading "
        "its own blocks without a hop. *aiohttp ceiling*: `bench/ceiling.py`, aiohttp on uvloop "
        "answering from a dict with no signature check and no lookup, the floor of any Python "
        "endpoint's cost per request.",
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
        "| connections | gateway | worker S3 | nginx proxy_cache | nginx static | aiohttp ceiling "
        "| gateway / proxy_cache | worker S3 / proxy_cache | ceiling / proxy_cache |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for conns in (16, 64):
        r = res[f"small_c{conns}"]
        pc = r["nginx_proxy_cache"]["rps"]
        cells = " | ".join(
            f"{r[k]['rps']:.0f} ({_lat(r[k])})"
            for k in ("gateway", "worker_s3", "nginx_proxy_cache", "nginx", "aiohttp_ceiling")
        )
        ratios = " | ".join(f"{r[k]['rps'] / pc:.2f}" for k in ("gateway", "worker_s3", "aiohttp_ceiling"))
        lines.append(f"| {conns} | {cells} | {ratios} |")
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

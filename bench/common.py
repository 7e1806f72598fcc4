"""Shared benchmark plumbing: a pipecache cluster, nginx over the same files, wrk and curl."""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "tests" / "functional"))

from cluster import ACCESS_KEY, SECRET_KEY, PcCluster, listening_children  # noqa: E402, F401
from pipecache.cli.up import free_port  # noqa: E402


def bench_cluster(
    ufs_root: Path,
    data: Path,
    memory: str,
    ssd: str,
    s3_port: int | None = None,
    master_args: tuple[str, ...] = (),
) -> PcCluster:
    """One worker and the gateway with the defaults users get (4 MiB blocks, no test tuning).

    ``s3_port``: the worker also serves S3 there (``worker --s3-port``).
    """
    worker_args: tuple[str, ...] = ()
    if s3_port is not None:
        worker_args = ("--s3-port", str(s3_port), "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY)
    return PcCluster(
        ufs_root.as_uri(),
        data,
        block_size="4MiB",
        memory=memory,
        ssd=ssd,
        n_workers=1,
        master_args=master_args,
        worker_args=worker_args,
    )


def need(*tools: str) -> None:
    """Install Debian packages for missing tools (benchmarks only; the test suite needs none)."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pkgs = {"nginx": "nginx-light", "wrk": "wrk", "curl": "curl"}
        subprocess.run(["apt-get", "install", "-y", "-qq", *[pkgs.get(t, t) for t in missing]], check=True)


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read()
    except OSError:
        return None


class Nginx:
    """nginx serving ``root`` as static files on a free port (sendfile on, tcp_nopush off)."""

    def __init__(
        self, root: Path, workdir: Path, workers: int = 1, extra: str = "", http_extra: str = ""
    ) -> None:
        """``extra``: more directives for the server block (e.g. a ``location``); ``http_extra``
        for the http block (e.g. a ``proxy_cache_path``)."""
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "nginx.conf"
        conf.write_text(f"""
worker_processes {workers};
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush off;
    keepalive_requests 1000000;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    {http_extra}
    server {{ listen 127.0.0.1:{self.port}; root {root}; {extra} }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(workdir)])
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 10
        while _get(self.url + "/") is None and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((workdir / "error.log").read_text())
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def curl_once(url: str) -> tuple[float, int]:
    """One single-stream GET of the whole of ``url``, body discarded: its bytes/s and its size."""
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download} %{size_download} %{http_code}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if out[2] != "200":
        raise RuntimeError(f"{url} answered {out[2]}")
    return float(out[0]), int(out[1])


def curl_speeds(urls: dict[str, str], rounds: int = 7) -> dict[str, float]:
    """Median bytes/s of single-stream GETs (bodies discarded) of each of ``urls``.

    The servers take turns, one read each per round, so that a change in the
    machine's load during the measurement falls on all of them alike.
    """
    speeds: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(rounds):
        for name, url in urls.items():
            speeds[name].append(curl_once(url)[0])
    return {name: statistics.median(xs) for name, xs in speeds.items()}


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    """Requests completed in the run."""


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(base: str, paths_file: Path, connections: int, seconds: int, threads: int = 1) -> WrkResult:
    """wrk against ``base`` with each request's path drawn at random from ``paths_file``."""
    script = paths_file.with_suffix(".lua")
    script.write_text(f"""
local paths = {{}}
for line in io.lines("{paths_file}") do paths[#paths + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
""")
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            str(script),
            base,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    dist = out.partition("Latency Distribution")[2]
    if not dist:
        raise RuntimeError(f"wrk printed no latency distribution:\n{out}")
    p50 = _ms(re.search(r"50%\s+(\S+)", dist).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+(\S+)", dist).group(1))  # type: ignore[union-attr]
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errs += sum(int(x) for x in m.groups())
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return WrkResult(rps, p50, p99, errs, done)


def tree_cpu(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) used so far by ``pids`` and all their descendants."""
    total, seen = 0.0, set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            if p.pid in seen:
                continue
            seen.add(p.pid)
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system
    return total


def wrk_cpu(
    base: str, paths_file: Path, connections: int, seconds: int, front: Sequence[int], path: Sequence[int]
) -> dict[str, float]:
    """``wrk`` plus the CPU seconds its servers used meanwhile: ``front`` (the processes wrk
    talks to) and ``path`` (every process a request goes through, front included), each with
    its descendants. ``*_rps_per_core``: requests per CPU-second of that server time."""
    f0, p0 = tree_cpu(front), tree_cpu(path)
    r = wrk(base, paths_file, connections, seconds)
    front_s, path_s = tree_cpu(front) - f0, tree_cpu(path) - p0
    return {
        **r.__dict__,
        "front_cpu_s": front_s,
        "path_cpu_s": path_s,
        "front_rps_per_core": r.requests / front_s if front_s > 0 else 0.0,
        "path_rps_per_core": r.requests / path_s if path_s > 0 else 0.0,
    }


def presigner(endpoint: str):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )

    def url(bucket: str, key: str) -> str:
        return str(
            s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600)
        )

    return url

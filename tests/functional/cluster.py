"""A real pipecache cluster for tests: master, workers and gateway as processes on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pipecache.cli.up import Cluster, free_port, wait_healthy
from prometheus_client.parser import text_string_to_metric_families

ACCESS_KEY = "pc-test-access"
SECRET_KEY = "pc-test-secret-0123456789"


def metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples of a service's /metrics as {(name, sorted labels): value}."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric_sum(url: str, name: str, **labels: str) -> float:
    total = 0.0
    for (n, labs), v in metrics(url).items():
        if n == name and all(dict(labs).get(k) == val for k, val in labels.items()):
            total += v
    return total


def listening_children(pid: int, port: int) -> set[int]:
    """Pids of ``pid``'s children that listen on ``port``, as the kernel sees them (the
    processes of ``gateway --processes N``)."""
    import psutil

    pids = set()
    for child in psutil.Process(pid).children():
        try:
            conns = child.net_connections("tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
            pids.add(child.pid)
    return pids


@dataclass
class Worker:
    index: int
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()
    """Extra worker flags (e.g. ``--advertise`` a fault proxy in front of it)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


FAST_TEST_MASTER_ARGS = (
    "--heartbeat-interval",
    "0.2",
    "--worker-timeout",
    "3",
    "--metadata-ttl",
    "1",
    # A small load window, so a test can cancel a load job while it runs.
    "--load-window",
    "16",
)
"""Master tuning for tests: quick heartbeats and expiry, short metadata trust."""


@dataclass
class PcCluster:
    """Master, workers and gateway as processes (tests and benchmarks share it)."""

    ufs: str
    root: Path
    block_size: str = "1MiB"
    memory: str = "16MiB"
    ssd: str = "512MiB"
    n_workers: int = 2
    master_args: tuple[str, ...] = FAST_TEST_MASTER_ARGS
    """Extra master flags; benchmarks pass () to run with the defaults users get."""
    worker_args: tuple[str, ...] = ()
    """Extra flags of every worker ``start`` creates."""
    master_journal: bool = True
    """Give the master a data dir (root/master), so load jobs survive ``restart_master``."""
    procs: Cluster = field(default_factory=Cluster)
    workers: list[Worker] = field(default_factory=list)
    master_port: int = 0
    gateway_port: int = 0
    master_proc: subprocess.Popen[bytes] | None = None

    @property
    def master(self) -> str:
        return f"http://127.0.0.1:{self.master_port}"

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def start(self) -> PcCluster:
        self.master_port = free_port()
        self.start_master()
        for i in range(self.n_workers):
            w = Worker(i, free_port(), self.root / f"worker-{i}", args=self.worker_args)
            self.workers.append(w)
            self.start_worker(w)
        self.gateway_port = free_port()
        g = self.procs.spawn(
            "gateway",
            "gateway",
            "--master",
            self.master,
            "--port",
            str(self.gateway_port),
            env={"PIPECACHE_ACCESS_KEY": ACCESS_KEY, "PIPECACHE_SECRET_KEY": SECRET_KEY},
        )
        wait_healthy(self.gateway, g)
        self.wait_workers(self.n_workers)
        return self

    def extra_gateway(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> tuple[str, subprocess.Popen[bytes]]:
        """Another gateway in front of this cluster's master, with its own flags (and
        environment variables, added to this process's); the caller stops it."""
        port = free_port()
        cmd = [sys.executable, "-m", "pipecache.cli", "gateway", "--master", self.master, "--port", str(port)]
        proc = subprocess.Popen([*cmd, *args], env=None if env is None else {**os.environ, **env})
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, proc)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return url, proc

    @contextmanager
    def running_gateway(self, *args: str) -> Iterator[str]:
        """``extra_gateway`` for the length of a ``with``: its URL, and it is stopped after."""
        url, proc = self.extra_gateway(*args)
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait(10)

    def start_master(self) -> None:
        """Start the master (again, after ``stop_master``: same port, same flags, same journal)."""
        journal = ("--data-dir", str(self.root / "master")) if self.master_journal else ()
        self.master_proc = self.procs.spawn(
            "master",
            "master",
            *("--port", str(self.master_port), "--ufs", self.ufs, "--block-size", self.block_size),
            *journal,
            *self.master_args,
        )
        wait_healthy(self.master, self.master_proc)

    def stop_master(self, sig: int = signal.SIGTERM) -> None:
        self._stop(self.master_proc, sig)
        self.master_proc = None

    def restart_master(self, sig: int = signal.SIGKILL) -> None:
        """Stop the master (killed outright by default: nothing flushed) and start a new one."""
        self.stop_master(sig)
        self.start_master()

    def start_worker(self, w: Worker) -> None:
        w.proc = self.procs.spawn(
            f"worker-{w.index}",
            "worker",
            "--master",
            self.master,
            "--port",
            str(w.port),
            "--data-dir",
            str(w.data_dir),
            "--memory",
            self.memory,
            "--ssd",
            self.ssd,
            "--worker-id",
            f"w{w.index}",
            *w.args,
        )
        wait_healthy(w.url, w.proc)

    def stop_worker(self, w: Worker, sig: int = signal.SIGTERM) -> None:
        self._stop(w.proc, sig)
        w.proc = None

    def _stop(self, proc: subprocess.Popen[bytes] | None, sig: int) -> None:
        assert proc is not None
        proc.send_signal(sig)
        proc.wait(15)
        self.procs.procs = [(n, p) for n, p in self.procs.procs if p is not proc]

    def wait_workers(self, n: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while metric_sum(self.master, "pipecache_master_workers") != n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"master did not see {n} workers")
            time.sleep(0.1)

    def worker_sum(self, name: str, **labels: str) -> float:
        return sum(metric_sum(w.url, name, **labels) for w in self.workers if w.proc is not None)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``pipecache ARGS --master <this master>`` and capture its output."""
        return subprocess.run(
            [sys.executable, "-m", "pipecache.cli", *args, "--master", self.master],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def stop(self) -> None:
        self.procs.stop()


def make_bucket(s3, name: str) -> str:  # type: ignore[no-untyped-def]
    """Create ``name`` in the under-store (moto) unless it exists; return it."""
    from botocore.exceptions import ClientError

    try:
        s3.create_bucket(Bucket=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    return name


def running(c: PcCluster) -> Iterator[PcCluster]:
    """Body of a cluster fixture: ``c`` started, then stopped when the fixture's scope ends."""
    try:
        yield c.start()
    finally:
        c.stop()


def gateway_client(cluster: PcCluster, endpoint: str | None = None):  # type: ignore[no-untyped-def]
    """A boto3 S3 client pointed at ``cluster``'s gateway, or at ``endpoint`` (one attempt per call)."""
    return s3_client(endpoint or cluster.gateway)


def s3_client(url: str, access: str = ACCESS_KEY, secret: str = SECRET_KEY, **config: object):  # type: ignore[no-untyped-def]
    """A boto3 S3 client pointed at the S3 endpoint ``url`` (test keys unless given, path
    addressing, one attempt per call); ``config``: botocore ``Config`` fields to change."""
    import boto3
    from botocore.config import Config

    settings: dict[str, object] = {"s3": {"addressing_style": "path"}, "retries": {"max_attempts": 1}}
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(**{**settings, **config}),  # type: ignore[arg-type]
    )

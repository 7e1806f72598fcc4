"""`pipecache up`: master, workers and gateway as child processes on 127.0.0.1.

Each service is a real server in its own process (as in a cluster), started in
order and checked through its /health endpoint. Ctrl-C or SIGTERM stops them all;
if one dies, the others are stopped too and the exit code says so.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

import click

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise click.ClickException(f"{url} exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1):
                return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise click.ClickException(f"{url} did not become healthy within {timeout:.0f}s") from None
            time.sleep(0.05)


class Cluster:
    """The child processes of one `up`, stopped together."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "pipecache.cli", *args]
        proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})})
        self.procs.append((name, proc))
        return proc

    def stop(self, timeout: float = 10.0) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def watch(self) -> int:
        """Block until a signal arrives (0) or a child dies (1)."""
        stopping = False

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stopping:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    click.echo(
                        f"pipecache: {name} exited with code {proc.returncode}; stopping the cluster",
                        err=True,
                    )
                    return 1
            time.sleep(0.2)
        return 0


def _seed_demo(ufs_root: Path) -> None:
    """A new default under-store gets one bucket with one object, so the first `aws s3 ls` shows something."""
    if ufs_root.exists() and any(ufs_root.iterdir()):
        return
    demo = ufs_root / "demo"
    demo.mkdir(parents=True, exist_ok=True)
    (demo / "hello.txt").write_text("Hello from pipecache: this object was read through the cache.\n")


def run_up(
    data_dir: str,
    ufs: str | None,
    gateway_port: int,
    master_port: int,
    n_workers: int,
    memory: int,
    ssd: int,
    access_key: str,
    secret_key: str,
    consistency: str = "ttl=60",
    tenants_file: str | None = None,
    gateway_processes: int = 1,
) -> int:
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    if ufs is None:
        root = data / "ufs"
        _seed_demo(root)
        ufs = root.as_uri()
    master_port = master_port or free_port()
    master_url = f"http://{HOST}:{master_port}"
    cluster = Cluster()
    try:
        m = cluster.spawn(
            "master", "master", "--host", HOST, "--port", str(master_port), "--ufs", ufs,
            "--consistency", consistency, "--data-dir", str(data / "master"),
        )  # fmt: skip
        wait_healthy(master_url, m)
        for i in range(n_workers):
            port = free_port()
            w = cluster.spawn(
                f"worker-{i}",
                "worker",
                "--master",
                master_url,
                "--host",
                HOST,
                "--port",
                str(port),
                "--data-dir",
                str(data / f"worker-{i}"),
                "--memory",
                str(memory),
                "--ssd",
                str(ssd),
                "--worker-id",
                f"worker-{i}",
            )
            wait_healthy(f"http://{HOST}:{port}", w)
        g = cluster.spawn(
            "gateway",
            "gateway",
            "--master",
            master_url,
            "--host",
            HOST,
            "--port",
            str(gateway_port),
            "--processes",
            str(gateway_processes),
            *(["--tenants", str(Path(tenants_file).resolve())] if tenants_file else []),
            env={"PIPECACHE_ACCESS_KEY": access_key, "PIPECACHE_SECRET_KEY": secret_key},
        )
        endpoint = f"http://{HOST}:{gateway_port}"
        wait_healthy(endpoint, g)
        keys = f"keys: access {access_key}  secret {secret_key}"
        creds = f"AWS_ACCESS_KEY_ID={access_key} AWS_SECRET_ACCESS_KEY={secret_key}"
        if tenants_file:
            keys, creds = f"tenants: {tenants_file}", "AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=…"
        click.echo(
            f"pipecache is up ({n_workers} workers, under-store {ufs}, consistency {consistency})\n"
            f"  gateway: {endpoint}\n"
            f"  master: {master_url}\n"
            f"  {keys}\n"
            f"try:\n"
            f"  {creds} aws --endpoint-url {endpoint} s3 ls\n"
            f"  PIPECACHE_MASTER={master_url} pipecache report\n"
            f"Ctrl-C stops the cluster.",
        )
        sys.stdout.flush()
        return cluster.watch()
    except click.ClickException as exc:
        click.echo(f"pipecache up: {exc.format_message()}", err=True)
        return 1
    finally:
        cluster.stop()

"""`pipecache up`: a whole cluster from one command, answering the AWS CLI, stopped by SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from cluster import free_port


def _read_banner(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"pipecache up exited early: {''.join(lines)}")
        lines.append(line)
        if "Ctrl-C" in line:
            return "".join(lines)
    raise AssertionError("no banner")


def test_up_serves_the_aws_cli_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipecache.cli",
            "up",
            "--data-dir",
            str(tmp_path / "pc"),
            "--gateway-port",
            str(port),
            "--memory",
            "32MiB",
            "--ssd",
            "64MiB",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        banner = _read_banner(proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) == 4  # master, two workers, gateway
        assert f"gateway: http://127.0.0.1:{port}" in banner
        master = re.search(r"master: (http://127\.0\.0\.1:\d+)", banner)
        access = re.search(r"access (\S+)", banner)
        secret = re.search(r"secret (\S+)", banner)
        assert master and access and secret
        env = {**os.environ, "AWS_ACCESS_KEY_ID": access.group(1), "AWS_SECRET_ACCESS_KEY": secret.group(1)}
        aws = [
            sys.executable,
            "-m",
            "awscli",
            "--endpoint-url",
            f"http://127.0.0.1:{port}",
            "--region",
            "us-east-1",
        ]
        out = subprocess.run([*aws, "s3", "ls"], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "demo" in out.stdout
        out = subprocess.run(
            [*aws, "s3", "cp", "s3://demo/hello.txt", "-"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout == (tmp_path / "pc" / "ufs" / "demo" / "hello.txt").read_text()
        report = subprocess.run(
            [sys.executable, "-m", "pipecache.cli", "report", "--master", master.group(1), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert report.returncode == 0, report.stderr
        assert report.stdout.count('"worker_id"') == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()
    assert code == 0
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]

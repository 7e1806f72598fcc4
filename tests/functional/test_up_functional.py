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
import pytest
from cluster import free_port, listening_children


def _start_up(tmp_path: Path, gateway_port: int, *flags: str) -> subprocess.Popen[str]:
    """`pipecache up` with its state under ``tmp_path``; its banner and output on stdout."""
    cmd = [sys.executable, "-m", "pipecache.cli", "up", "--data-dir", str(tmp_path / "pc")]
    cmd += ["--gateway-port", str(gateway_port), *flags]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


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


def _listeners(parent: psutil.Process, port: int, want: int = 2, timeout: float = 30) -> int:
    """How many of ``parent``'s children listen on ``port``, once ``want`` do (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        n = len(listening_children(parent.pid, port))
        if n == want or time.monotonic() > deadline:
            return n
        time.sleep(0.1)


def test_up_serves_the_aws_cli_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    proc = _start_up(tmp_path, port, "--memory", "32MiB", "--ssd", "64MiB")
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
    assert (tmp_path / "pc" / "master" / "snapshot").is_file()  # the master's journal, checkpointed at stop


def test_up_passes_tenants_and_consistency_through(tmp_path: Path) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    tenants = tmp_path / "tenants.yaml"
    reader_key = "{access_key: READER, secret_key: reader-secret}"
    tenants.write_text(f"tenants:\n  demo-reader:\n    keys: [{reader_key}]\n    read: [demo]\n")
    port = free_port()
    proc = _start_up(
        tmp_path, port,
        "--memory", "32MiB", "--ssd", "0", "--workers", "1",
        "--tenants", str(tenants), "--consistency", "always", "--gateway-processes", "2",
    )  # fmt: skip
    try:
        banner = _read_banner(proc)
        assert "consistency always" in banner and f"tenants: {tenants}" in banner
        gateway = next(c for c in psutil.Process(proc.pid).children() if "gateway" in c.cmdline())
        assert _listeners(gateway, port) == 2

        def s3(access: str, secret: str):  # type: ignore[no-untyped-def]
            return boto3.client(
                "s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=access,
                aws_secret_access_key=secret, region_name="us-east-1",
                config=Config(retries={"max_attempts": 1}),
            )  # fmt: skip

        reader = s3("READER", "reader-secret")
        assert reader.get_object(Bucket="demo", Key="hello.txt")["Body"].read().startswith(b"Hello")
        with pytest.raises(ClientError) as ei:
            reader.put_object(Bucket="demo", Key="x", Body=b"x")
        assert ei.value.response["Error"]["Code"] == "AccessDenied"
        with pytest.raises(ClientError) as ei:
            s3("pipecache", "pipecache-secret").list_buckets()
        assert ei.value.response["Error"]["Code"] == "InvalidAccessKeyId"
        # always: a change behind the cache's back is seen by the next read.
        (tmp_path / "pc" / "ufs" / "demo" / "hello.txt").write_text("changed behind the cache\n")
        assert (
            reader.get_object(Bucket="demo", Key="hello.txt")["Body"].read() == b"changed behind the cache\n"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()

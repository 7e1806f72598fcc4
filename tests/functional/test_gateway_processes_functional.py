"""`pipecache gateway --processes 2`: two real gateway processes on one port, supervised."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from botocore.config import Config
from cluster import ACCESS_KEY, SECRET_KEY, PcCluster, listening_children, make_bucket
from pipecache.cli.up import free_port, wait_healthy
from prometheus_client.parser import text_string_to_metric_families

BODY = os.urandom(64 * 1024)
OK_GETS = {"op": "get_object", "status": "200"}


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def listeners(self) -> set[int]:
        """Pids of the supervisor's children that listen on the port (seen by the kernel, not told)."""
        return listening_children(self.proc.pid, self.port)

    def wait_listeners(self, n: int, exclude: frozenset[int] = frozenset(), timeout: float = 30) -> set[int]:
        deadline = time.monotonic() + timeout
        while True:
            pids = self.listeners() - exclude
            if len(pids) == n:
                return pids
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"{len(pids)} of {n} gateway processes listen"
            time.sleep(0.1)


def start_gateway(cluster: PcCluster, tmp_path: Path, *args: str) -> Gateway:
    port = free_port()
    log = tmp_path / "gateway.log"
    cmd = [sys.executable, "-m", "pipecache.cli", "-v", "gateway", "--master", cluster.master]
    with log.open("wb") as out:
        proc = subprocess.Popen([*cmd, "--port", str(port), *args], stderr=out)
    gw = Gateway(proc, port, log)
    try:
        wait_healthy(gw.url, proc)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return gw


@pytest.fixture
def gateway2(cluster: PcCluster, tmp_path: Path) -> Iterator[Gateway]:
    """An anonymous gateway with two processes (plain HTTP requests need no signing)."""
    gw = start_gateway(cluster, tmp_path, "--anonymous", "--processes", "2")
    try:
        gw.wait_listeners(2)
        yield gw
    finally:
        if gw.proc.poll() is None:
            gw.proc.terminate()
            gw.proc.wait(20)


def connection_owners(port: int, conns: list[http.client.HTTPConnection]) -> dict[int, int]:
    """{client connection index: pid of the process holding its server end}."""
    by_client_port = {c.sock.getsockname()[1]: i for i, c in enumerate(conns)}  # type: ignore[union-attr]
    owners = {}
    for proc in psutil.process_iter():
        try:
            for sc in proc.net_connections("tcp"):
                if sc.laddr.port == port and sc.raddr and sc.raddr.port in by_client_port:
                    owners[by_client_port[sc.raddr.port]] = proc.pid
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return owners


def get(conn: http.client.HTTPConnection, path: str) -> bytes:
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 200, body[:300]
    return body


def get_objects_200(text: str) -> float:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "pipecache_gateway_requests_total" and s.labels == OK_GETS:
                return s.value
    return 0.0


def test_two_processes_serve_and_metrics_sum(s3, cluster: PcCluster, gateway2: Gateway) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "procs")
    s3.put_object(Bucket=b, Key="obj", Body=BODY)
    conns = [http.client.HTTPConnection("127.0.0.1", gateway2.port, timeout=10) for _ in range(16)]
    try:
        before = get_objects_200(get(conns[0], "/metrics").decode())
        for c in conns:
            assert get(c, f"/{b}/obj") == BODY
        owners = connection_owners(gateway2.port, conns)
        assert set(owners.values()) == gateway2.listeners(), "16 connections did not reach both processes"
        assert len(owners) == len(conns)
        for i, c in enumerate(conns):  # more reads, on the same connections
            for _ in range(i % 3):
                assert get(c, f"/{b}/obj") == BODY
        sent = len(conns) + sum(i % 3 for i in range(len(conns)))
        per_pid = {pid: sum(1 + i % 3 for i, p in owners.items() if p == pid) for pid in set(owners.values())}
        assert all(n > 0 for n in per_pid.values()) and sum(per_pid.values()) == sent
        # A scrape answered by either process counts the requests of both.
        for pid in per_pid:
            scraper = next(conns[i] for i, p in owners.items() if p == pid)
            assert get_objects_200(get(scraper, "/metrics").decode()) - before == sent
    finally:
        for c in conns:
            c.close()


def test_killed_process_is_replaced_while_reads_go_on(s3, cluster: PcCluster, gateway2: Gateway) -> None:  # type: ignore[no-untyped-def]
    b = make_bucket(s3, "procs")
    s3.put_object(Bucket=b, Key="kill", Body=BODY)
    import boto3

    # Retries as SDKs make them: a request on a connection of the killed process is tried again.
    client = boto3.client(
        "s3",
        endpoint_url=gateway2.url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}),
    )
    reads: list[float] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                assert client.get_object(Bucket=b, Key="kill")["Body"].read() == BODY
                reads.append(time.monotonic())
            except BaseException as exc:  # noqa: BLE001 (reported by the test)
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        old = gateway2.listeners()
        victim = min(old)
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        new = gateway2.wait_listeners(1, exclude=frozenset(old))
        assert gateway2.listeners() == (old - {victim}) | new
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors[:3]
    assert any(t > killed_at for t in reads), "no read succeeded after the kill"
    assert len(new) == 1 and gateway2.proc.poll() is None
    assert f"(pid {victim}) ended with signal 9" in gateway2.log.read_text()


def test_sigterm_stops_every_process(cluster: PcCluster, gateway2: Gateway) -> None:
    family = psutil.Process(gateway2.proc.pid).children(recursive=True)
    assert len(family) >= 2
    metrics_dir = psutil.Process(min(gateway2.listeners())).environ()["PROMETHEUS_MULTIPROC_DIR"]
    assert Path(metrics_dir).is_dir()
    t0 = time.monotonic()
    gateway2.proc.send_signal(signal.SIGTERM)
    assert gateway2.proc.wait(20) == 0
    assert time.monotonic() - t0 < 15
    gone, alive = psutil.wait_procs(family, timeout=5)
    assert not alive, f"left behind: {alive}"
    assert not Path(metrics_dir).exists()
    assert "stopping 2 gateway process(es)" in gateway2.log.read_text()


def test_children_stop_when_the_supervisor_is_killed(cluster: PcCluster, gateway2: Gateway) -> None:
    children = [psutil.Process(pid) for pid in gateway2.listeners()]
    metrics_dir = children[0].environ()["PROMETHEUS_MULTIPROC_DIR"]
    gateway2.proc.kill()
    gateway2.proc.wait(10)
    gone, alive = psutil.wait_procs(children, timeout=15)
    shutil.rmtree(metrics_dir)  # a killed supervisor cannot remove it
    assert not alive, f"orphans: {alive}"


def test_port_in_use_fails_fast(cluster: PcCluster) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        t0 = time.monotonic()
        r = subprocess.run(
            [sys.executable, "-m", "pipecache.cli", "gateway", "--master", cluster.master,
             "--port", str(port), "--anonymous", "--processes", "2"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in r.stderr
    assert time.monotonic() - t0 < 10


def test_processes_that_cannot_start_stop_the_command(tmp_path: Path) -> None:
    """Settings a child refuses (the CLI checks them first; this is the supervisor's own guard)."""
    script = (
        "import sys\n"
        "from pipecache.cli.gateway_procs import run_gateway_processes\n"
        "from pipecache.gateway import GatewaySettings\n"
        f"s = GatewaySettings(master='ftp://nowhere', port={free_port()}, anonymous=True)\n"
        "sys.exit(run_gateway_processes(s, 2))\n"
    )
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "pipecache gateway: --master must be an http(s) URL, not 'ftp://nowhere'" in r.stderr
    assert "ended with exit code 1: it failed to start; stopping" in r.stderr
    assert "Traceback" not in r.stderr
    assert time.monotonic() - t0 < 20


def test_bad_settings_are_refused_before_any_process_starts(cluster: PcCluster, tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pipecache.cli", "gateway", "--master", cluster.master,
         "--processes", "2", "--tenants", str(tmp_path / "missing.yaml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2
    assert "cannot read tenants file" in r.stderr

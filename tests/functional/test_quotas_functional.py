"""Tenant cache quotas on a real cluster: a tenant over quota evicts its own data, not another's.

Two workers with room for everything the test reads (no node pressure), so
every eviction seen here is the quota's doing. Tenant "qa" may use 1 MiB of
cache over the cluster (512 KiB per worker, equal capacities); "qb" has no
quota. Both read through a gateway with a tenants file.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from cluster import PcCluster, Worker, make_bucket, metric_sum, s3_client
from pipecache.client import Client, connect

KiB, MiB = 1024, 1024 * 1024
BS = 64 * KiB
BUCKET = "quotas"
QUOTA = MiB
USED = "pipecache_worker_quota_used_bytes"
LIMIT = "pipecache_worker_quota_limit_bytes"
TENANTS = f"""\
tenants:
  qa:
    keys: [{{access_key: QAKEY, secret_key: qa-secret}}]
    read: [{BUCKET}/a]
    cache_quota: {QUOTA}
  qb:
    keys: [{{access_key: QBKEY, secret_key: qb-secret}}]
    read: [{BUCKET}/b]
"""
A_KEYS = [f"a/{i:02d}" for i in range(40)]  # 80 blocks, 5 MiB: five times the quota
B_KEYS = [f"b/{i:02d}" for i in range(10)]  # 20 blocks


@dataclass
class Quotas:
    cluster: PcCluster
    gateway: str
    """The gateway with the tenants file."""
    proc: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def qc(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Quotas]:
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    make_bucket(s3, BUCKET)
    for k in A_KEYS + B_KEYS:
        s3.put_object(Bucket=BUCKET, Key=k, Body=os.urandom(2 * BS))
    root = tmp_path_factory.mktemp("quotas")
    c = PcCluster(ufs=moto_server, root=root, block_size="64KiB", memory="8MiB", ssd="32MiB")
    tenants = Path(root) / "tenants.yaml"
    tenants.write_text(TENANTS)
    c.start()
    url, gw = c.extra_gateway("--tenants", str(tenants))
    try:
        yield Quotas(c, url, gw)
    finally:
        if gw.poll() is None:
            gw.terminate()
            gw.wait(10)
        c.stop()


def read_all(url: str, access: str, secret: str, keys: list[str]) -> None:
    s3 = s3_client(url, access, secret)
    for k in keys:
        assert len(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()) == 2 * BS


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def block_ids(pc: Client, keys: list[str]) -> list[str]:
    out: list[str] = []
    for key in keys:
        info = await pc.stat(BUCKET, key)
        out.extend(info.block_id(i) for i in range(-(-info.size // info.block_size)))
    return out


def per_worker(c: PcCluster, name: str, tenant: str) -> list[float]:
    return [metric_sum(w.url, name, tenant=tenant) for w in c.workers if w.proc is not None]


async def shares_arrived(c: PcCluster) -> bool:
    return per_worker(c, LIMIT, "qa") == [QUOTA / 2, QUOTA / 2]


async def test_over_quota_tenant_evicts_its_own_blocks_only(qc: Quotas) -> None:
    c, url = qc.cluster, qc.gateway
    await eventually(lambda: shares_arrived(c))
    async with connect(c.master) as pc:
        assert await pc.quotas() == {"qa": QUOTA}
        await asyncio.to_thread(read_all, url, "QBKEY", "qb-secret", B_KEYS)
        b_ids = await block_ids(pc, B_KEYS)

        async def b_reported() -> bool:
            return len(await pc.locate(b_ids)) == len(b_ids)

        await eventually(b_reported)
        assert sum(per_worker(c, USED, "qb")) == len(b_ids) * BS  # charged, not limited

        await asyncio.to_thread(read_all, url, "QAKEY", "qa-secret", A_KEYS)
        a_ids = await block_ids(pc, A_KEYS)
        used = per_worker(c, USED, "qa")
        # Each worker keeps the tenant within its share: no slack is needed.
        assert all(0 < u <= QUOTA / 2 for u in used), used
        assert sum(used) <= QUOTA

        async def a_settled() -> bool:
            return len(await pc.locate(a_ids)) * BS == sum(per_worker(c, USED, "qa"))

        await eventually(a_settled)
        assert len(await pc.locate(b_ids)) == len(b_ids)  # every block of qb's is still cached
        assert sum(per_worker(c, USED, "qb")) == len(b_ids) * BS
        evicted = c.worker_sum("pipecache_worker_store_events_total", event="quota_evictions")
        assert evicted >= len(a_ids) - QUOTA // BS

        async def beats_carry_it() -> bool:  # what `pipecache report` shows
            workers = await pc.workers()
            return sum(w.tenants.get("qa", 0) for w in workers) == sum(per_worker(c, USED, "qa"))

        await eventually(beats_carry_it)
    report = json.loads(c.cli("report", "--json").stdout)["cluster"]
    assert report["quotas"] == {"qa": QUOTA}
    assert 0 < report["tenants"]["qa"] <= QUOTA and report["tenants"]["qb"] == len(b_ids) * BS
    assert metric_sum(c.master, "pipecache_master_tenant_cache_used_bytes", tenant="qb") == len(b_ids) * BS


async def test_quotas_survive_a_master_restart(qc: Quotas) -> None:
    c = qc.cluster
    await eventually(lambda: shares_arrived(c))
    # Without the gateway nobody re-registers the quotas: only the journal can bring them back.
    qc.proc.terminate()
    qc.proc.wait(10)
    c.restart_master()
    c.wait_workers(2)
    async with connect(c.master) as pc:
        assert await pc.quotas() == {"qa": QUOTA}
    # A worker started afresh knows no limits: the restored master sends its share.
    w: Worker = c.workers[1]
    c.stop_worker(w)
    c.start_worker(w)
    c.wait_workers(2)
    await eventually(lambda: shares_arrived(c))


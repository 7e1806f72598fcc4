"""A master killed and restarted on a real cluster: load jobs resume, history stays, reads go on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cluster import PcCluster, gateway_client, running
from pipecache.client import ClientOptions, connect
from pipecache.client.protocol import JobInfo, ObjectInfo

N_OBJECTS = 400
UFS_BYTES = "pipecache_ufs_read_bytes_total"


@pytest.fixture(scope="module")
def restart_cluster(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcCluster]:
    """A cluster of its own: these tests kill its master."""
    yield from running(PcCluster(ufs=moto_server, root=tmp_path_factory.mktemp("restart")))


@pytest.fixture(scope="module")
def small_objects(moto_server: str) -> dict[str, bytes]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="restart")
    objects = {f"many/{i:04d}": os.urandom(50 + i % 97) for i in range(N_OBJECTS)}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: s3.put_object(Bucket="restart", Key=kv[0], Body=kv[1]), objects.items()))
    return objects


def _totals(info: JobInfo) -> tuple[int, int, int, int, int, int]:
    return (
        info.objects_total,
        info.objects_done,
        info.bytes_total,
        info.bytes_done,
        info.blocks_total,
        info.blocks_resident,
    )


async def _wait(pc, job_id: str, timeout: float = 60.0) -> JobInfo:  # type: ignore[no-untyped-def]
    """The job's info once finished, riding out a master that is not up yet."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            info: JobInfo = await pc.job(job_id).info()
            if info.state in ("done", "failed", "cancelled"):
                return info
        assert time.monotonic() < deadline, f"{job_id} did not finish"
        await asyncio.sleep(0.1)


async def test_load_job_survives_a_kill_mid_job(
    restart_cluster: PcCluster, small_objects: dict[str, bytes]
) -> None:
    c = restart_cluster
    total_bytes = sum(len(v) for v in small_objects.values())
    async with connect(c.master) as pc:
        job = await pc.load("s3://restart/many/", priority=3, hold="restart-run")
        async with contextlib.aclosing(job.progress(interval=0.05)) as updates:
            async for info in updates:
                if info.blocks_resident >= 20:
                    break
        assert info.state == "running" and info.blocks_resident < N_OBJECTS, info
        c.restart_master(signal.SIGKILL)
        final = await _wait(pc, job.id)
        # The resumed job joins its hold again (journaled with it).
        (hold,) = [h for h in await pc.holds() if h.name == "restart-run"]
    assert final.state == "done", final
    assert final.priority == 3 and final.paths == ["s3://restart/many/"]
    # Exact totals: blocks resident before the kill count once, none twice.
    expect = (N_OBJECTS, N_OBJECTS, total_bytes, total_bytes, N_OBJECTS, N_OBJECTS)
    assert _totals(final) == expect
    assert final.created == pytest.approx(job.last.created, abs=0.01)
    assert (hold.kind, hold.blocks) == ("protect", N_OBJECTS)


async def test_finished_jobs_survive_kill_and_clean_restart(
    restart_cluster: PcCluster, small_objects: dict[str, bytes]
) -> None:
    c = restart_cluster
    async with connect(c.master) as pc:
        before = {j.id: j for j in await pc.jobs()}
        cancelled = await pc.load("s3://restart/many/00")
        await cancelled.cancel()
        before[cancelled.id] = await cancelled.info()
        assert before and all(j.state in ("done", "cancelled") for j in before.values())
        for sig in (signal.SIGKILL, signal.SIGTERM):
            c.restart_master(sig)
            after = {j.id: j for j in await pc.jobs()}
            assert after.keys() == before.keys()
            for jid, j in before.items():
                a = after[jid]
                assert (a.state, a.paths, a.priority) == (j.state, j.paths, j.priority)
                assert _totals(a) == _totals(j)
        # New ids continue after the highest one seen: history is never shadowed.
        newest = max(int(jid.removeprefix("job-")) for jid in before)
        again = await pc.load("s3://restart/many/01")
        assert again.id == f"job-{newest + 1}"
        assert (await _wait(pc, again.id)).state == "done"
    assert sorted(p.name for p in (c.root / "master").iterdir())[-1] == "snapshot"


async def test_pins_and_ttls_survive_a_kill(
    restart_cluster: PcCluster, small_objects: dict[str, bytes]
) -> None:
    c = restart_cluster
    async with connect(c.master) as pc:
        pinned = await pc.pin("s3://restart/many/000", name="keep-these")
        await pc.set_ttl("s3://restart/many/001", 3600)
        await (await pc.load("s3://restart/many/000")).wait()
        before = {h.name: h for h in await pc.holds()}
        c.restart_master(signal.SIGKILL)
        after = {h.name: h for h in await pc.holds()}
        assert after.keys() == before.keys()
        for name, h in before.items():
            a = after[name]
            assert (a.kind, a.paths, a.blocks, a.expires) == (h.kind, h.paths, h.blocks, h.expires)
        assert after["keep-these"].blocks == pinned.blocks == 10
        # The workers registered again and got their pins back: every pinned block is resident
        # and pinned on a worker.
        deadline = time.monotonic() + 15
        while c.worker_sum("pipecache_worker_pinned_blocks") < 10:
            assert time.monotonic() < deadline, "pins were not re-sent after the restart"
            await asyncio.sleep(0.1)
        await pc.unpin("keep-these")
        c.restart_master(signal.SIGKILL)
        assert "keep-these" not in {h.name for h in await pc.holds()}


async def test_locations_rebuilt_and_reads_go_on_across_a_restart(
    restart_cluster: PcCluster, small_objects: dict[str, bytes], gw
) -> None:
    """While the master is down, reads with cached metadata still come from the workers;
    after it is back, locate finds every block again from the workers' re-registrations.

    Right after the restart a client refreshing its worker list may see only the workers
    that re-registered so far: reads stay correct, but may miss on a non-owner for a beat.
    Hits are therefore checked while the master is down and once the list is whole again.
    """
    c = restart_cluster
    keys = sorted(small_objects)[:60]
    opts = ClientOptions(metadata_ttl=300, timeout=10)
    async with connect(c.master, opts) as pc:
        await (await pc.load("s3://restart/many/")).wait(interval=0.1, timeout=60)
        infos: list[ObjectInfo] = [await pc.stat("restart", k) for k in keys]
        ids = [i.block_id(0) for i in infos]
        assert len((await pc.locate(ids)).keys()) == len(ids)
        for k in keys[40:]:  # a reader that has been reading: it knows the workers
            assert await pc.get("restart", k) == small_objects[k]
        hits_before = c.worker_sum(UFS_BYTES)

        c.stop_master(signal.SIGKILL)
        for k in keys[:20]:  # metadata cached here, worker list cached: no master needed
            assert await pc.get("restart", k) == small_objects[k]
        assert c.worker_sum(UFS_BYTES) == hits_before  # all hits, with no master
        c.start_master()
        for k in keys[20:40]:  # the new master knows no worker yet: the cached list still serves
            assert await pc.get("restart", k) == small_objects[k]

        deadline = time.monotonic() + 10
        while len(found := await pc.locate(ids)) < len(ids):
            assert time.monotonic() < deadline, f"{len(found)} of {len(ids)} blocks located"
            await asyncio.sleep(0.2)
    c.wait_workers(len(c.workers))
    await asyncio.sleep(2.2)  # past the gateway's worker-list TTL: its next read refreshes it

    def read_all() -> list[bytes]:
        return [gw.get_object(Bucket="restart", Key=k)["Body"].read() for k in keys]

    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, read_all) == [small_objects[k] for k in keys]
    settled = c.worker_sum(UFS_BYTES)
    assert await loop.run_in_executor(None, read_all) == [small_objects[k] for k in keys]
    assert c.worker_sum(UFS_BYTES) == settled  # every read a hit again


@pytest.fixture
def gw(restart_cluster: PcCluster):  # type: ignore[no-untyped-def]
    return gateway_client(restart_cluster)


def test_unusable_data_dir_stops_the_master_with_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "file").write_text("in the way")
    proc = subprocess.run(
        [sys.executable, "-m", "pipecache.cli", "master", "--port", "0", "--ufs", "file:///tmp"]
        + ["--data-dir", str(tmp_path / "file" / "journal")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "Error: cannot use journal folder" in proc.stderr and "Traceback" not in proc.stderr

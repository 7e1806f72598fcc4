"""Soak: readers and writers through the gateway, a worker killed and restarted midway.

    python tests/soak.py [--minutes 10] [--readers 8] [--writers 2] [--keys 200]

Every object body names its own version: 8 bytes of version, then bytes drawn
from a generator seeded by (key, version). A reader recomputes the body from
that version and compares every byte, so a wrong byte cannot pass unnoticed,
whether it comes from a stale block, a torn write or a bad splice of blocks.
Writers overwrite random keys with new versions. Midway one worker is killed
(SIGKILL) and started again. The run fails on any wrong byte, on any error
outside the restart window, or when a process's resident memory grows by more
than the allowed margin between the first and the last quarter of the run.
``make soak`` runs ten minutes; the test suite runs a short version.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "functional"))

from cluster import ACCESS_KEY, SECRET_KEY, PcCluster  # noqa: E402

BUCKET = "soak"
KiB = 1024


def body_of(key: str, version: int, size: int) -> bytes:
    """The one correct body of ``key`` at ``version``."""
    seed = hashlib.blake2b(f"{key}\0{version}".encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(seed, "big"))
    return version.to_bytes(8, "big") + rng.randbytes(size - 8)


def size_of(key: str) -> int:
    """Sizes from 1 KiB to 3 MiB (several blocks at 1 MiB blocks), fixed per key."""
    return 1 * KiB + (int(hashlib.md5(key.encode()).hexdigest(), 16) % (3 * 1024 * KiB))


@dataclass
class SoakResult:
    reads: int = 0
    writes: int = 0
    bytes_verified: int = 0
    wrong: list[str] = field(default_factory=list)
    errors_in_window: int = 0
    errors_outside: list[str] = field(default_factory=list)
    rss: dict[str, list[int]] = field(default_factory=dict)
    seconds: float = 0.0

    def memory_growth(self) -> dict[str, float]:
        """Per process: mean RSS of the last quarter over that of the first quarter."""
        out = {}
        for name, xs in self.rss.items():
            q = max(1, len(xs) // 4)
            out[name] = (sum(xs[-q:]) / q) / max(1.0, sum(xs[:q]) / q)
        return out


def _client(endpoint: str):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, read_timeout=30),
    )


def run_soak(
    c: PcCluster, seconds: float, readers: int = 8, writers: int = 2, keys: int = 200, window: float = 8.0
) -> SoakResult:
    """Drive ``c`` for ``seconds``; kill and restart worker 0 at the midpoint."""
    import psutil

    res = SoakResult()
    lock = threading.Lock()
    names = [f"k/{i:04d}" for i in range(keys)]
    s3 = _client(c.gateway)
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    for k in names:
        s3.put_object(Bucket=BUCKET, Key=k, Body=body_of(k, 0, size_of(k)))
    stop = threading.Event()
    restart: list[float] = []  # [kill time, back-up time]
    t_start = time.monotonic()

    def in_window(t: float) -> bool:
        return bool(restart) and restart[0] - 1 <= t <= (restart[1] if len(restart) > 1 else 1e18) + window

    def error(what: str) -> None:
        t = time.monotonic()
        with lock:
            if in_window(t):
                res.errors_in_window += 1
            else:
                res.errors_outside.append(f"{t - t_start:.1f}s {what[:300]}")

    def reader(seed: int) -> None:
        rng, cli = random.Random(seed), _client(c.gateway)
        while not stop.is_set():
            k = rng.choice(names)
            try:
                got = cli.get_object(Bucket=BUCKET, Key=k)["Body"].read()
            except Exception as exc:  # any failure to read is an error, judged by its time
                error(f"read {k}: {exc!r}")
                continue
            version = int.from_bytes(got[:8], "big") if len(got) >= 8 else -1
            ok = version >= 0 and got == body_of(k, version, size_of(k))
            with lock:
                res.reads += 1
                if ok:
                    res.bytes_verified += len(got)
                else:
                    res.wrong.append(f"{k}: {len(got)} bytes, version field {version}")

    def writer(seed: int) -> None:
        rng, cli = random.Random(seed), _client(c.gateway)
        version = 1_000_000 * (seed + 1)
        while not stop.is_set():
            k = rng.choice(names)
            version += 1
            try:
                cli.put_object(Bucket=BUCKET, Key=k, Body=body_of(k, version, size_of(k)))
            except Exception as exc:
                error(f"write {k}: {exc!r}")
                continue
            with lock:
                res.writes += 1
            time.sleep(0.05)

    def sample() -> None:
        procs = {name: psutil.Process(p.pid) for name, p in c.procs.procs}
        while not stop.wait(1.0):
            for name, p in list(procs.items()):
                try:
                    res.rss.setdefault(name, []).append(p.memory_info().rss)
                except psutil.NoSuchProcess:
                    del procs[name]  # the killed worker: its successor is sampled anew below

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
    threads += [threading.Thread(target=writer, args=(100 + i,)) for i in range(writers)]
    threads.append(threading.Thread(target=sample))
    for t in threads:
        t.start()
    try:
        time.sleep(seconds / 2)
        restart.append(time.monotonic())
        w = c.workers[0]
        c.stop_worker(w, signal.SIGKILL)
        c.start_worker(w)
        restart.append(time.monotonic())
        time.sleep(max(0.0, seconds - (time.monotonic() - t_start)))
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    res.seconds = time.monotonic() - t_start
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--readers", type=int, default=8)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--keys", type=int, default=200)
    ap.add_argument("--max-growth", type=float, default=1.5, help="allowed RSS ratio, last/first quarter")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pc-soak-") as tmp:
        root = Path(tmp)
        (root / "ufs" / BUCKET).mkdir(parents=True)
        c = PcCluster((root / "ufs").as_uri(), root, memory="64MiB", ssd="256MiB").start()
        try:
            r = run_soak(c, args.minutes * 60, args.readers, args.writers, args.keys)
        finally:
            c.stop()
    growth = r.memory_growth()
    print(
        f"{r.seconds:.0f}s: {r.reads} reads ({r.bytes_verified / 2**20:.0f} MiB verified), "
        f"{r.writes} writes, "
        f"{len(r.wrong)} wrong, {r.errors_in_window} errors in the restart window, "
        f"{len(r.errors_outside)} outside; RSS growth " + ", ".join(f"{k} {v:.2f}" for k, v in growth.items())
    )
    for line in (r.wrong + r.errors_outside)[:20]:
        print("  ", line)
    bad = r.wrong or r.errors_outside or any(v > args.max_growth for v in growth.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Training-style epochs over a far-away S3: direct, through pipecache cold, warm, preloaded.

    python bench/faraway.py [--gib 2] [--mbit 1000] [--delay-ms 10] [--readers 16]

Root only: it makes a private network namespace (only its own loopback), puts
an htb rate limit on the origin's port and a delay proxy in front of it
(bench/netshape.py), and runs everything inside. The origin is nginx serving
files with S3-style paths (``/bucket/key``: GET, HEAD, Range, ETag, If-Match)
plus a pre-written ListObjectsV2 answer, because moto is far too slow to stand
for S3 here. One epoch reads every file once, in a shuffled order, with a pool
of boto3 readers. Scenarios, all in one run:

- direct: readers -> far origin;
- local: readers -> the same files from an unshaped nginx (the practical limit);
- pipecache cold, then warm: readers -> gateway -> workers -> far origin;
- preloaded: a fresh cluster, ``load`` of the prefix, then an epoch;
- fsspec peers: ``simplecache::s3://`` and ``filecache::s3://`` (s3fs), two epochs.

Writes bench/results/faraway.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ACCESS_KEY, RESULTS, SECRET_KEY, Nginx, PcCluster, free_port, need  # noqa: E402
from netshape import DelayProxy, fill, limit_port, run_in_namespace  # noqa: E402

MiB = 1024 * 1024
BUCKET = "bench"


def listing_xml(root: Path, files: list[tuple[str, int]]) -> str:
    """A ListObjectsV2 answer for every file, with the ETags nginx will send for them."""
    items = []
    for key, _ in files:
        st = (root / BUCKET / key).stat()
        etag = f'"{int(st.st_mtime):x}-{st.st_size:x}"'
        modified = datetime.fromtimestamp(int(st.st_mtime), UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        items.append(
            f"<Contents><Key>{escape(key)}</Key><LastModified>{modified}</LastModified>"
            f"<ETag>{escape(etag)}</ETag><Size>{st.st_size}</Size>"
            "<StorageClass>STANDARD</StorageClass></Contents>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Name>{BUCKET}</Name><Prefix>epoch/</Prefix><KeyCount>{len(items)}</KeyCount>"
        f"<MaxKeys>{len(items)}</MaxKeys><IsTruncated>false</IsTruncated>{''.join(items)}"
        "</ListBucketResult>"
    )


def s3_client(endpoint: str, readers: int):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=readers,
            retries={"max_attempts": 1},
            read_timeout=120,
        ),
    )


def epoch(read: Callable[[str], int], files: list[tuple[str, int]], readers: int, seed: int) -> float:
    """Seconds to read every file once, in a shuffled order, with ``readers`` threads."""
    order = files[:]
    random.Random(seed).shuffle(order)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(readers) as pool:
        for (key, size), got in zip(order, pool.map(lambda f: read(f[0]), order), strict=True):
            if got != size:
                raise RuntimeError(f"{key}: read {got} bytes, expected {size}")
    return time.perf_counter() - t0


def boto_reader(endpoint: str, readers: int) -> Callable[[str], int]:
    s3 = s3_client(endpoint, readers)

    def read(key: str) -> int:
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"]
        n = 0
        while chunk := body.read(MiB):
            n += len(chunk)
        return n

    return read


def fsspec_reader(protocol: str, endpoint: str, cache: Path) -> Callable[[str], int]:
    import threading

    import fsspec

    local = threading.local()  # fsspec's caching filesystems are not safe to share across threads

    def fs():  # type: ignore[no-untyped-def]
        if not hasattr(local, "fs"):
            local.fs = fsspec.filesystem(
                protocol,
                target_protocol="s3",
                target_options={
                    "key": ACCESS_KEY,
                    "secret": SECRET_KEY,
                    "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
                },
                cache_storage=str(cache),
                skip_instance_cache=True,
            )
        return local.fs

    def read(key: str) -> int:
        with fs().open(f"{BUCKET}/{key}", "rb") as f:
            n = 0
            while chunk := f.read(MiB):
                n += len(chunk)
            return n

    return read


def cluster(ufs: str, data: Path, total: int) -> tuple[PcCluster, str]:
    """One worker whose tiers hold the whole data set, with the defaults users get otherwise;
    it also serves S3 itself (``worker --s3-port``): the cluster and that endpoint's URL."""
    mem = f"{max(256, total // MiB // 2)}MiB"
    ssd = f"{2 * total // MiB + 1024}MiB"
    port = free_port()
    c = PcCluster(
        ufs,
        data,
        block_size="4MiB",
        memory=mem,
        ssd=ssd,
        n_workers=1,
        master_args=(),
        worker_args=("--s3-port", str(port), "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY),
    )
    return c.start(), f"http://127.0.0.1:{port}"


async def preload(master: str) -> float:
    from pipecache.client import connect

    async with connect(master) as pc:
        t0 = time.perf_counter()
        job = await pc.load(f"s3://{BUCKET}/epoch/")
        info = await job.wait()
        took = time.perf_counter() - t0
    if info.state != "done":
        raise RuntimeError(f"preload ended {info.state}: {info.reason or info.failed[:3]}")
    return took


def inside(args: argparse.Namespace) -> dict[str, Any]:
    total = int(args.gib * 1024 * MiB)
    work = Path(tempfile.mkdtemp(prefix="pc-faraway-"))
    os.chmod(work, 0o755)  # nginx workers run as another user
    root = work / "origin"
    files = fill(root / BUCKET, total, 256 * 1024, 4 * MiB)
    size = sum(s for _, s in files)
    (work / "list.xml").write_text(listing_xml(root, files))
    listing = f"location = /{BUCKET} {{ default_type application/xml; alias {work}/list.xml; }}"
    far = Nginx(root, work / "nginx-far", extra=listing)
    local = Nginx(root, work / "nginx-local", extra=listing)
    limit_port(far.port, args.mbit)
    proxy = DelayProxy(far.port, args.delay_ms / 1000).start()
    origin = f"http://127.0.0.1:{proxy.port}"
    # The cluster's under-store client signs with these (nginx ignores them).
    os.environ.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION="us-east-1"
    )
    r: dict[str, Any] = {"files": len(files), "bytes": size}
    n = args.readers
    try:
        print(f"{len(files)} files, {size / MiB:.0f} MiB; {args.mbit} Mbit/s, +{args.delay_ms} ms each way")
        r["direct_s"] = epoch(boto_reader(origin, n), files, n, 1)
        print(f"direct {r['direct_s']:.1f}s")
        r["local_nginx_s"] = epoch(boto_reader(local.url, n), files, n, 2)
        print(f"local nginx {r['local_nginx_s']:.1f}s")
        c, worker_s3 = cluster(origin, work / "pc-cold", size)
        try:
            r["cold_s"] = epoch(boto_reader(c.gateway, n), files, n, 3)
            print(f"pipecache cold {r['cold_s']:.1f}s")
            r["warm_s"] = epoch(boto_reader(c.gateway, n), files, n, 4)
            print(f"pipecache warm {r['warm_s']:.1f}s")
            r["warm_worker_s3_s"] = epoch(boto_reader(worker_s3, n), files, n, 8)
            print(f"pipecache warm, the worker's S3 endpoint {r['warm_worker_s3_s']:.1f}s")
        finally:
            c.stop()
        c, worker_s3 = cluster(origin, work / "pc-preload", size)
        try:
            r["preload_s"] = asyncio.run(preload(c.master))
            print(f"preload {r['preload_s']:.1f}s")
            r["preloaded_epoch_s"] = epoch(boto_reader(c.gateway, n), files, n, 5)
            print(f"after preload {r['preloaded_epoch_s']:.1f}s")
        finally:
            c.stop()
        if not args.no_fsspec:
            for proto in ("simplecache", "filecache"):
                cache = work / f"fsspec-{proto}"
                reader = fsspec_reader(proto, origin, cache)
                r[f"{proto}_cold_s"] = epoch(reader, files, n, 6)
                r[f"{proto}_warm_s"] = epoch(reader, files, n, 7)
                print(f"fsspec {proto}: {r[f'{proto}_cold_s']:.1f}s, then {r[f'{proto}_warm_s']:.1f}s")
    finally:
        proxy.stop()
        far.stop()
        local.stop()
        shutil.rmtree(work, ignore_errors=True)
    return r


def report(r: dict[str, Any], args: argparse.Namespace) -> str:
    link = args.mbit * 1e6 / 8
    rows = [
        ("warm epoch, speed-up over direct", r["direct_s"] / r["warm_s"], ">= 10"),
        ("warm epoch vs local nginx (time ratio)", r["warm_s"] / r["local_nginx_s"], "<= 1.25"),
        ("warm epoch, the worker's S3 endpoint, speed-up over direct",
         r["direct_s"] / r["warm_worker_s3_s"], ">= 10"),
        ("warm epoch, the worker's S3 endpoint vs local nginx (time ratio)",
         r["warm_worker_s3_s"] / r["local_nginx_s"], "<= 1.25"),
        ("cold epoch vs direct (time ratio)", r["cold_s"] / r["direct_s"], "<= 1.1"),
        ("epoch after preload, speed-up over direct", r["direct_s"] / r["preloaded_epoch_s"], ">= 10"),
        ("preload throughput, share of the link", r["bytes"] / r["preload_s"] / link, ">= 0.9"),
        ("direct epoch throughput, share of the link", r["bytes"] / r["direct_s"] / link, "(context)"),
    ]
    for proto in ("simplecache", "filecache"):
        if f"{proto}_warm_s" in r:
            rows.append((f"fsspec {proto} warm epoch vs pipecache warm (time ratio)",
                         r[f"{proto}_warm_s"] / r["warm_s"], "(peer)"))
            rows.append((f"fsspec {proto} cold epoch vs pipecache cold (time ratio)",
                         r[f"{proto}_cold_s"] / r["cold_s"], "(peer)"))
    lines = [
        "# Far-away S3: epochs",
        "",
        f"{r['files']} files of 256 KiB to 4 MiB, {r['bytes'] / MiB:.0f} MiB; link {args.mbit} Mbit/s (htb) "
        f"and {args.delay_ms} ms each way (delay proxy); {args.readers} boto3 readers; "
        f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}. "
        "Measured in one run by `python bench/faraway.py`.",
        "",
        "| ratio | value | target |",
        "|---|---|---|",
        *(f"| {name} | {value:.2f} | {target} |" for name, value, target in rows),
        "",
        "| epoch | seconds |",
        "|---|---|",
        *(f"| {k[:-2].replace('_', ' ')} | {v:.2f} |" for k, v in r.items() if k.endswith("_s")),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=2.0, help="data set size in GiB")
    ap.add_argument("--mbit", type=int, default=1000, help="origin link rate (htb), Mbit/s")
    ap.add_argument("--delay-ms", type=float, default=10.0, help="added latency each way")
    ap.add_argument("--readers", type=int, default=16, help="concurrent boto3 readers")
    ap.add_argument("--no-fsspec", action="store_true", help="skip the fsspec peers")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.inside:
        if os.geteuid() != 0:
            print("faraway.py needs root (network namespace, tc)", file=sys.stderr)
            return 2
        need("nginx")
        return run_in_namespace([sys.executable, __file__, "--inside", *sys.argv[1:]])
    r = inside(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "faraway.json").write_text(json.dumps({"args": vars(args), "results": r}, indent=2) + "\n")
    md = report(r, args)
    (RESULTS / "faraway.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

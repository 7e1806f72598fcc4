"""One big object read through two gateways that differ in one setting.

    python bench/lean_blocks.py [--mib 256] [--rounds 5] [--tier memory|ssd] [--versus aiohttp|malloc]

One worker (4 MiB blocks) and two gateways in front of it. ``--versus aiohttp``
(the default): one reads blocks with the lean fetcher (``--lean-blocks``), one with
aiohttp's client (``--aiohttp-blocks``). ``--versus malloc``: both lean, one with
glibc's allocator tuned as services tune it (the default), one with
``PIPECACHE_MALLOC_TUNING=0``. The object is read once
through each to warm it, then single-stream with curl, alternating between the
gateways so that both see the same machine load. Per read: MiB/s and the
gateway's CPU seconds. nginx serving the same file gives the reference. The
figures are medians; on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import ACCESS_KEY, SECRET_KEY, Nginx, bench_cluster, curl_once, need, presigner, tree_cpu

MiB = 1024 * 1024
BUCKET, KEY = "bench", "big.bin"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tier", choices=["memory", "ssd"], default="memory")
    ap.add_argument("--versus", choices=["aiohttp", "malloc"], default="aiohttp")
    args = ap.parse_args()
    need("curl", "nginx")
    size = args.mib * MiB
    with tempfile.TemporaryDirectory(prefix="lean-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # nginx's workers run as another user
        ufs = root / "ufs"
        (ufs / BUCKET).mkdir(parents=True)
        (ufs / BUCKET / KEY).write_bytes(os.urandom(size))
        memory = f"{args.mib * 2}MiB" if args.tier == "memory" else "8MiB"
        cluster = bench_cluster(ufs, root / "data", memory=memory, ssd=f"{args.mib * 2}MiB")
        cluster.start()
        nginx = Nginx(ufs, root / "nginx")
        keys = ("--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY)
        if args.versus == "aiohttp":
            gateways = {
                "lean": cluster.extra_gateway("--lean-blocks", *keys),
                "aiohttp": cluster.extra_gateway("--aiohttp-blocks", *keys),
            }
        else:
            gateways = {
                "tuned": cluster.extra_gateway(*keys),
                "untuned": cluster.extra_gateway(*keys, env={"PIPECACHE_MALLOC_TUNING": "0"}),
            }
        try:
            urls = {name: presigner(url)(BUCKET, KEY) for name, (url, _) in gateways.items()}
            for url in urls.values():
                assert curl_once(url)[1] == size  # warm: fetched from the under-store, cached
            nginx_speed = [curl_once(f"{nginx.url}/{BUCKET}/{KEY}")[0] for _ in range(3)]
            speed: dict[str, list[float]] = {name: [] for name in gateways}
            cpu: dict[str, list[float]] = {name: [] for name in gateways}
            for _ in range(args.rounds):
                for name, (_, proc) in gateways.items():
                    c0 = tree_cpu([proc.pid])
                    bps, got = curl_once(urls[name])
                    cpu[name].append(tree_cpu([proc.pid]) - c0)
                    assert got == size
                    speed[name].append(bps / MiB)
                    time.sleep(0.2)
        finally:
            for _, proc in gateways.values():
                proc.terminate()
                proc.wait(10)
            nginx.stop()
            cluster.stop()
    ref = statistics.median(nginx_speed) / MiB
    print(f"{args.mib} MiB object, {args.tier} tier, {args.rounds} alternating reads per gateway")
    print(f"nginx (sendfile, same file): {ref:.0f} MiB/s")
    for name in gateways:
        s, c = statistics.median(speed[name]), statistics.median(cpu[name])
        runs = " ".join(f"{x:.0f}" for x in speed[name])
        print(f"{name:8s} {s:6.0f} MiB/s ({s / ref:.2f} of nginx)  gateway CPU {c:.2f} s/read  [{runs}]")
    new, old = gateways
    new_s, old_s = statistics.median(speed[new]), statistics.median(speed[old])
    new_c, old_c = statistics.median(cpu[new]), statistics.median(cpu[old])
    print(f"{new}/{old}: throughput x{new_s / old_s:.2f}, gateway CPU per read x{new_c / old_c:.2f}")


if __name__ == "__main__":
    main()

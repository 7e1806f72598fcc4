"""Cost of the master's journal: appends (fsynced or not), checkpoints and replay.

    python bench/journal.py [--records 1000] [--dir PATH]

Records look like a load job's "created" event. Run it on the disk the master's
data dir will use (``--dir``): fsync latency is a property of the disk.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pipecache.master.journal import Journal

BODY = {"id": "job-123", "paths": ["s3://datasets/imagenet/train/"], "priority": 0, "created": 1.7e9}


def appends(folder: Path, n: int, sync: bool) -> float:
    """Median seconds per append."""
    j, _, _ = Journal.open(folder, sync=sync)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        j.append("jobs/created", BODY)
        times.append(time.perf_counter() - t0)
    j.close()
    return statistics.median(times)


def checkpoint(folder: Path, jobs: int) -> float:
    j, _, _ = Journal.open(folder)
    state = {"jobs": [dict(BODY, id=f"job-{i}", state="done", failed=[]) for i in range(jobs)]}
    t0 = time.perf_counter()
    j.checkpoint(state)
    took = time.perf_counter() - t0
    j.close()
    return took


def replay(folder: Path) -> float:
    t0 = time.perf_counter()
    j, _, _ = Journal.open(folder)
    took = time.perf_counter() - t0
    j.close()
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--dir", default=None, help="Folder on the disk to measure (default: a temp folder).")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        root = Path(d)
        fsynced = appends(root / "sync", args.records, sync=True)
        unsynced = appends(root / "nosync", args.records, sync=False)
        replayed = replay(root / "nosync")
        ck = checkpoint(root / "ck", args.records)
    print(f"append, fsynced:     {fsynced * 1e3:8.2f} ms (median of {args.records})")
    print(f"append, not synced:  {unsynced * 1e6:8.1f} us")
    print(f"replay of {args.records} records: {replayed * 1e3:6.1f} ms")
    print(f"checkpoint of {args.records} jobs: {ck * 1e3:6.1f} ms")


if __name__ == "__main__":
    main()

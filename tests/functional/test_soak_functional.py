"""A short soak in CI (`make soak` runs the long one): no wrong byte, errors only during a restart."""

from __future__ import annotations

import sys
from pathlib import Path

from cluster import PcCluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from soak import BUCKET, run_soak  # noqa: E402


def test_short_soak_with_a_worker_restart(tmp_path: Path) -> None:
    (tmp_path / "ufs" / BUCKET).mkdir(parents=True)
    c = PcCluster((tmp_path / "ufs").as_uri(), tmp_path, memory="16MiB", ssd="64MiB").start()
    try:
        r = run_soak(c, seconds=20, readers=4, writers=1, keys=40)
    finally:
        c.stop()
    assert r.reads > 100 and r.writes > 20, r
    assert r.wrong == [], r.wrong[:5]
    assert r.errors_outside == [], r.errors_outside[:5]
    assert r.bytes_verified > 0

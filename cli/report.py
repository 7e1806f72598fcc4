"""Output of `pipecache report`: the cluster, then one block of lines per worker."""

from __future__ import annotations

from typing import Any

from ..client import WorkerInfo
from ..client import stats as st


def _tiers(capacity: dict[str, int], usage: dict[str, int]) -> list[str]:
    lines = []
    for tier in sorted(set(capacity) | set(usage)):
        cap, used = capacity.get(tier, 0), usage.get(tier, 0)
        share = f"  ({st.percent(used / cap)})" if cap else "  (off)"
        lines.append(f"{tier:<8}{st.human_bytes(used):>10} / {st.human_bytes(cap):<10}{share}")
    return lines


def _traffic(stats: dict[str, int]) -> str:
    return (
        f"hit ratio {st.percent(st.hit_ratio(stats))} of {st.reads(stats)} block reads "
        f"({st.percent(st.byte_hit_ratio(stats))} of bytes), "
        f"served {st.human_bytes(st.bytes_served(stats))}, "
        f"under-store read {st.human_bytes(stats.get(st.UFS_BYTES, 0))} in {stats.get(st.UFS_READS, 0)} reads"
    )


def _tenants(used: dict[str, int], quotas: dict[str, int]) -> list[str]:
    """One line per tenant: cache charged to it, against its quota."""
    names = sorted(set(used) | set(quotas))
    width = max((len(n) for n in names), default=0)
    lines = []
    for name in names:
        have, quota = used.get(name, 0), quotas.get(name)
        limit = st.human_bytes(quota) if quota is not None else "no quota"
        share = f"  ({st.percent(have / quota)})" if quota else ""
        lines.append(f"tenant {name:<{width}}{st.human_bytes(have):>10} / {limit}{share}")
    return lines


def report_lines(workers: list[WorkerInfo], quotas: dict[str, int] | None = None) -> list[str]:
    """Lines for people: cluster totals (with each tenant's cache against its quota), then each worker."""
    if not workers:
        return ["no live workers"]
    s = st.summarize(workers)
    out = [f"cluster: {s.workers} workers, {s.blocks} blocks", "  " + _traffic(s.stats)]
    out += ["  " + line for line in _tiers(s.capacity, s.usage)]
    out += ["  " + line for line in _tenants(s.tenants, quotas or {})]
    if s.reporting < s.workers:
        out.append(f"  ({s.workers - s.reporting} worker(s) send no statistics: an older version)")
    for w in workers:
        out.append(f"{w.worker_id}  {w.address}  {w.blocks} blocks")
        out.append("  " + (_traffic(w.stats) if w.stats else "no statistics reported"))
        out += ["  " + line for line in _tiers(w.capacity, w.usage)]
    return out


def report_json(workers: list[WorkerInfo], quotas: dict[str, int] | None = None) -> dict[str, Any]:
    """The same for scripts: each worker's fields and counters, and the cluster's totals."""
    return {
        "cluster": {**st.summarize(workers).to_json(), "quotas": quotas or {}},
        "workers": [{**w.to_wire(), **st.stats_json(w.stats), "reporting": bool(w.stats)} for w in workers],
    }

"""The master's status page: one self-refreshing HTML document, rendered from data.

A pure function of the workers, the jobs and the time, so it is tested on
values, with no server. Every value goes through ``html.escape`` (worker ids,
addresses and job paths come from the network); the page has no script and
no external asset (style inline), and reloads itself through a
``<meta http-equiv="refresh">``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime

from ..client import stats as st
from ..client.protocol import TIERS, JobInfo, WorkerInfo

RECENT_JOBS = 10
"""Finished jobs shown below the running ones (newest first)."""

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse}th,td{padding:.25em .7em;text-align:left;border-bottom:1px solid #ddd}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;width:10em;height:.8em;background:#e6e6e6;border-radius:3px;
vertical-align:middle;overflow:hidden}.bar span{display:block;height:100%;background:#3a7bd5}
.job-done .bar span{background:#3a9d5d}.job-failed .bar span,.job-cancelled .bar span{background:#c0504d}
.muted{color:#777}.summary td{border:none;padding:.1em .8em .1em 0}
"""


def e(value: object) -> str:
    """Escaped text of any value (quotes too: safe in attributes)."""
    return html.escape(str(value), quote=True)


def bar(fraction: float, label: str) -> str:
    """A progress bar (0..1, clamped) with its percentage beside it."""
    pct = max(0.0, min(fraction, 1.0)) * 100
    return (
        f'<span class="bar" role="progressbar" aria-label="{e(label)}" aria-valuemin="0" '
        f'aria-valuemax="100" aria-valuenow="{pct:.1f}"><span style="width:{pct:.1f}%"></span></span> '
        f"{pct:.1f}%"
    )


def tier_cell(tier: str, used: int, capacity: int) -> str:
    if capacity <= 0:
        return '<span class="muted">off</span>'
    return f"{bar(used / capacity, tier + ' use')} {e(st.human_bytes(used))} / {e(st.human_bytes(capacity))}"


def _tiers(workers: Iterable[WorkerInfo]) -> list[str]:
    """The standard tiers in order, then any other tier a worker reported."""
    extra = sorted({t for w in workers for t in (*w.capacity, *w.usage)} - set(TIERS))
    return [*TIERS, *extra]


def summary_section(workers: list[WorkerInfo]) -> str:
    s = st.summarize(workers)
    rows = [
        ("workers", f"{s.workers} live"),
        ("blocks", str(s.blocks)),
        ("hit ratio", f"{st.percent(st.hit_ratio(s.stats))} of block reads "
                      f"({st.percent(st.byte_hit_ratio(s.stats))} of bytes)"),
        ("served", st.human_bytes(st.bytes_served(s.stats))),
        ("under-store reads", f"{st.human_bytes(s.stats[st.UFS_BYTES])} in {s.stats[st.UFS_READS]} reads"),
    ]
    if s.reporting < s.workers:
        rows.append(("note", f"{s.workers - s.reporting} worker(s) send no statistics (older version)"))
    cells = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    tiers = "".join(
        f"<tr><th>{e(t)}</th><td>{tier_cell(t, s.usage.get(t, 0), s.capacity.get(t, 0))}</td></tr>"
        for t in _tiers(workers)
    )
    return f'<h2>Cluster</h2><table class="summary" id="cluster">{cells}{tiers}</table>'


def workers_section(workers: list[WorkerInfo], now: float) -> str:
    if not workers:
        return '<h2>Workers</h2><p class="muted" id="workers">no live workers</p>'
    tiers = _tiers(workers)
    head = "".join(f"<th>{e(t)}</th>" for t in tiers)
    rows = []
    for w in workers:
        cells = "".join(f"<td>{tier_cell(t, w.usage.get(t, 0), w.capacity.get(t, 0))}</td>" for t in tiers)
        rows.append(
            f'<tr data-worker="{e(w.worker_id)}"><td>{e(w.worker_id)}</td><td>{e(w.address)}</td>'
            f'<td class="n">{e(w.blocks)}</td>{cells}'
            f'<td class="n">{e(st.percent(st.hit_ratio(w.stats)))}</td>'
            f'<td class="n">{e(st.human_bytes(st.bytes_served(w.stats)))}</td>'
            f'<td class="n">{e(st.human_bytes(w.stats.get(st.UFS_BYTES, 0)))}</td>'
            f'<td class="n">{e(f"{max(now - w.last_seen, 0.0):.1f}")}s ago</td></tr>'
        )
    return (
        '<h2>Workers</h2><table id="workers"><tr><th>worker</th><th>address</th><th>blocks</th>'
        f"{head}<th>hit ratio</th><th>served</th><th>under-store read</th><th>last beat</th></tr>"
        f"{''.join(rows)}</table>"
    )


def pick_jobs(jobs: list[JobInfo], recent: int = RECENT_JOBS) -> tuple[list[JobInfo], list[JobInfo]]:
    """(unfinished jobs, highest priority then oldest first; the last ``recent`` finished, newest first)."""
    running = sorted((j for j in jobs if not j.finished), key=lambda j: (-j.priority, j.created, j.id))
    done = sorted((j for j in jobs if j.finished), key=lambda j: (j.updated, j.id), reverse=True)
    return running, done[:recent]


def job_row(j: JobInfo) -> str:
    failed = f" ({len(j.failed)} failed)" if j.failed else ""
    reason = f'<br><span class="muted">{e(j.reason)}</span>' if j.reason else ""
    eta = "" if j.finished else f", eta {st.human_eta(j.eta_seconds)}"
    return (
        f'<tr class="job-{e(j.state)}" data-job="{e(j.id)}"><td>{e(j.id)}</td><td>{e(j.state)}</td>'
        f"<td>{bar(j.fraction, 'progress of ' + j.id)}</td>"
        f'<td class="n">{e(j.objects_done)}/{e(j.objects_total)}{e(failed)}</td>'
        f'<td class="n">{e(st.human_bytes(j.bytes_done))}/{e(st.human_bytes(j.bytes_total))}</td>'
        f'<td class="n">{e(st.human_bytes(j.throughput_bps))}/s{e(eta)}</td>'
        f'<td class="n">{e(j.priority)}</td><td>{e(" ".join(j.paths))}{reason}</td></tr>'
    )


def jobs_section(jobs: list[JobInfo], recent: int = RECENT_JOBS) -> str:
    running, done = pick_jobs(jobs, recent)
    head = (
        "<tr><th>job</th><th>state</th><th>progress</th><th>objects</th><th>bytes</th>"
        "<th>speed</th><th>priority</th><th>paths</th></tr>"
    )
    out = []
    groups = (("Running load jobs", running, "running"), ("Recent load jobs", done, "recent"))
    for title, group, ident in groups:
        if group:
            rows = "".join(job_row(j) for j in group)
            out.append(f'<h2>{title}</h2><table id="jobs-{ident}">{head}{rows}</table>')
        else:
            out.append(f'<h2>{title}</h2><p class="muted" id="jobs-{ident}">none</p>')
    return "".join(out)


def render_status(
    workers: list[WorkerInfo], jobs: list[JobInfo], *, now: float, refresh: int = 5
) -> str:
    """The whole page. ``now`` and the workers' ``last_seen`` are seconds since the epoch."""
    stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{int(refresh)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>pipecache status</title><style>{_STYLE}</style></head><body>"
        f'<h1>pipecache</h1><p class="muted">master status at {e(stamp)}, '
        f"refreshed every {int(refresh)} s</p>"
        f"{summary_section(workers)}{workers_section(workers, now)}{jobs_section(jobs)}"
        "</body></html>"
    )

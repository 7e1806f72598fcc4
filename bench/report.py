"""One report over every benchmark's latest results: bench/results/REPORT.md and PNG plots.

    python bench/report.py

Reads the JSON each scenario script wrote under bench/results/ (a scenario not run
yet is named as missing), plots the figures with matplotlib, and puts each
scenario's own Markdown table under its plot. `make bench` runs it last.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MiB = 1024 * 1024


def _bars(path: Path, title: str, ylabel: str, groups: dict[str, dict[str, float]]) -> None:
    """Grouped bars: one group per key of ``groups``, one bar per series inside it."""
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, name in enumerate(series):
        xs = [j + i * width for j in range(len(groups))]
        ax.bar(xs, [g.get(name, 0.0) for g in groups.values()], width, label=name)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(groups))], list(groups))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def hits(res: dict[str, Any]) -> None:
    _bars(
        RESULTS / "hits_big.png",
        "256 MiB object, one stream",
        "MiB/s",
        {
            tier: {
                "gateway": res[f"big_{tier}"]["gateway_Bps"] / MiB,
                "worker S3": res[f"big_{tier}"]["worker_s3_Bps"] / MiB,
                "nginx": res[f"big_{tier}"]["nginx_Bps"] / MiB,
            }
            for tier in ("memory", "ssd")
        },
    )
    names = {
        "gateway": "gateway",
        "gateway_2p": "gateway, 2 processes",
        "worker_s3": "worker S3",
        "nginx_proxy_cache": "nginx proxy_cache",
        "nginx_proxy_cache_2w": "nginx proxy_cache, 2 workers",
        "nginx": "nginx static",
        "aiohttp_ceiling": "aiohttp ceiling",
    }
    _bars(
        RESULTS / "hits_small.png",
        "64 KiB objects at random (wrk)",
        "requests/s",
        {f"{c} connections": {v: res[f"small_c{c}"][k]["rps"] for k, v in names.items()} for c in (16, 64)},
    )


def faraway(res: dict[str, Any]) -> None:
    r = res["results"]
    epochs = {k[:-2].replace("_", " "): v for k, v in r.items() if k.endswith("_s")}
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh(list(epochs), list(epochs.values()))
    ax.invert_yaxis()
    ax.set_xlabel("seconds for the epoch (lower is better)")
    ax.set_title(f"Far-away S3: {r['bytes'] / MiB:.0f} MiB in {r['files']} files")
    fig.tight_layout()
    fig.savefig(RESULTS / "faraway.png", dpi=100)
    plt.close(fig)


def eviction(res: dict[str, Any]) -> None:
    ratios = res["hit_ratio"]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(list(ratios), list(ratios.values()))
    ax.set_ylabel("hit ratio")
    ax.set_title("Eviction policies on a pipeline trace larger than the cache")
    ax.tick_params(axis="x", labelsize="small")
    fig.tight_layout()
    fig.savefig(RESULTS / "eviction.png", dpi=100)
    plt.close(fig)


def master_scale(res: list[dict[str, Any]]) -> None:
    blocks = [r["blocks"] / 1e6 for r in res]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4))
    a.plot(blocks, [r["bytes_per_block"] for r in res], marker="o")
    a.axhline(200, linestyle="--", color="grey", label="target 200")
    a.set_xlabel("million blocks")
    a.set_ylabel("bytes per block")
    a.legend()
    b.plot(blocks, [r["locate_ids_per_s"] / 1e3 for r in res], marker="o")
    b.set_xlabel("million blocks")
    b.set_ylabel("thousand ids located per second")
    fig.suptitle("Master block map")
    fig.tight_layout()
    fig.savefig(RESULTS / "master_scale.png", dpi=100)
    plt.close(fig)


SCENARIOS: list[tuple[str, str, str, list[str], Callable[[Any], None]]] = [
    ("hits", "Cache hits (scenarios 1 and 2)", "python bench/hits.py",
     ["hits_big.png", "hits_small.png"], hits),
    ("faraway", "Far-away S3 and the Python peer (scenarios 3 and 4)", "python bench/faraway.py",
     ["faraway.png"], faraway),
    ("eviction", "Eviction (scenario 5)", "python bench/eviction.py", ["eviction.png"], eviction),
    ("master_scale", "Master scale (scenario 6)", "python bench/master_scale.py", ["master_scale.png"],
     master_scale),
]  # fmt: skip


def main() -> None:
    out = [
        "# pipecache benchmarks: latest report",
        "",
        "Each scenario's figures come from one run of its script; ratios are measured side by "
        "side in that run. Regenerate everything with `make bench` (root).",
        "",
    ]
    for name, title, command, plots, plot in SCENARIOS:
        out += [f"## {title}", "", f"`{command}`", ""]
        data = RESULTS / f"{name}.json"
        if not data.exists():
            out += ["Not run yet.", ""]
            continue
        plot(json.loads(data.read_text()))
        out += [f"![{p}]({p})" for p in plots] + [""]
        table = RESULTS / f"{name}.md"
        if table.exists():
            # The scenario's own report, one heading level down.
            out += ["#" + line if line.startswith("#") else line for line in table.read_text().splitlines()]
            out.append("")
    profile = RESULTS / "profile.md"
    if profile.exists():
        out += ["## Where a small hit's time goes", "", "`python bench/profile.py`", ""]
        out += ["#" + line if line.startswith("#") else line for line in profile.read_text().splitlines()]
        out.append("")
    timeline = RESULTS / "watcher_timeline.md"
    if timeline.exists():
        out += ["## Kubeflow watcher timeline", "", "`python bench/watcher_timeline.py`", ""]
        out += ["#" + line if line.startswith("#") else line for line in timeline.read_text().splitlines()]
    (RESULTS / "REPORT.md").write_text("\n".join(out) + "\n")
    print(f"wrote {RESULTS / 'REPORT.md'}")


if __name__ == "__main__":
    main()

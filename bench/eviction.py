"""Eviction on a pipeline trace larger than the cache: LRU, LRFU, pipeline-aware, Belady.

    python bench/eviction.py [--capacity 1000] [--runs 3] [--lookahead 2]

The trace is what a daily Kubeflow pipeline reads, in blocks of equal size
(so Belady's rule, evict the block used farthest in the future, is the true
optimum), three runs in a row:

1. validate: the run's new raw partition, once;
2. featurize: the same raw partition again, and a lookup table shared by all runs;
3. train: the run's features, three shuffled epochs, and the lookup table;
4. evaluate: a test set shared by all runs.

The pipeline-aware policy is the store's own (``tiering.pins``: pinned blocks
are never evicted, released ones go first) driven the way the Kubeflow watcher
drives it: the blocks of the steps within the lookahead are pinned when a step
starts; when a step finishes, what no later step of the run reads is released.
Each policy gets the same capacity; the hit ratio counts every block read.
Writes bench/results/eviction.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

from pipecache.tiering.eviction import EvictionPolicy, LRFUPolicy, LRUPolicy  # noqa: E402
from pipecache.tiering.pins import PinAwarePolicy, PinSet  # noqa: E402


@dataclass(frozen=True)
class Step:
    run: int
    name: str
    reads: list[str]
    """Block ids in the order the step reads them (repeats are re-reads)."""


def pipeline(runs: int, capacity: int, seed: int = 1) -> list[Step]:
    """The trace of ``runs`` pipeline runs, sized relative to the cache (see the module docstring)."""
    rng = random.Random(seed)
    raw, features, table, test = int(capacity * 1.2), int(capacity * 0.6), capacity // 10, capacity // 5

    def blocks(name: str, n: int) -> list[str]:
        return [f"{name}:{i}" for i in range(n)]

    tab, tst = blocks("table", table), blocks("test", test)  # shared by every run
    steps: list[Step] = []
    for r in range(runs):
        raw_r, feat_r = blocks(f"raw{r}", raw), blocks(f"feat{r}", features)
        steps.append(Step(r, "validate", raw_r))
        steps.append(Step(r, "featurize", raw_r + tab))
        epochs: list[str] = []
        for _ in range(3):
            order = feat_r[:]
            rng.shuffle(order)
            epochs += order + tab
        steps.append(Step(r, "train", epochs))
        steps.append(Step(r, "evaluate", tst))
    return steps


class Cache:
    """Blocks of size 1 under a policy; ``access`` says whether it was a hit."""

    def __init__(self, capacity: int, policy: EvictionPolicy) -> None:
        self.capacity, self.policy = capacity, policy
        self.held: set[str] = set()

    def access(self, b: str) -> bool:
        if b in self.held:
            self.policy.on_access(b)
            return True
        if len(self.held) >= self.capacity:
            victims = self.policy.victims(1)
            if not victims:
                return False  # every block is pinned: served, not cached
            for v in victims:
                self.held.discard(v)
                self.policy.on_remove(v)
        self.held.add(b)
        self.policy.on_insert(b, 1)
        return False


@dataclass(frozen=True)
class StepHits:
    step: Step
    hits: int


def replay(
    steps: list[Step], capacity: int, policy: EvictionPolicy, pins: PinSet | None = None, lookahead: int = 0
) -> list[StepHits]:
    """Hits per step. With ``pins`` (``policy`` a PinAwarePolicy over them), the replay pins
    and releases as the watcher does (see the module docstring)."""
    cache = Cache(capacity, policy)
    out = []
    for i, step in enumerate(steps):
        if pins is not None:
            assert isinstance(policy, PinAwarePolicy)
            upcoming = [s for s in steps[i : i + 1 + lookahead] if s.run == step.run]
            policy.changed(pins.pin(b for s in upcoming for b in dict.fromkeys(s.reads)))
        hits = sum(cache.access(b) for b in step.reads)
        if pins is not None:
            assert isinstance(policy, PinAwarePolicy)
            later = {b for s in steps[i + 1 :] if s.run == step.run for b in s.reads}
            policy.changed(pins.release(b for b in dict.fromkeys(step.reads) if b not in later))
        out.append(StepHits(step, hits))
    return out


def ratio(per_step: list[StepHits]) -> float:
    return sum(h.hits for h in per_step) / sum(len(h.step.reads) for h in per_step)


def belady(steps: list[Step], capacity: int) -> float:
    reads = [b for s in steps for b in s.reads]
    nexts: list[int] = [0] * len(reads)
    last: dict[str, int] = {}
    for i in range(len(reads) - 1, -1, -1):
        nexts[i] = last.get(reads[i], len(reads) + i)  # never again: farther than anything
        last[reads[i]] = i
    import heapq

    held: dict[str, int] = {}  # block -> its next use
    heap: list[tuple[int, str]] = []  # (-next use, block), lazily cleaned
    hits = 0
    for i, b in enumerate(reads):
        if b in held:
            hits += 1
        elif len(held) >= capacity:
            while True:
                neg, v = heapq.heappop(heap)
                if held.get(v) == -neg:
                    break
            if -neg < nexts[i]:  # the victim is needed sooner than b: keep it, don't cache b
                heapq.heappush(heap, (neg, v))
                continue
            del held[v]
        held[b] = nexts[i]
        heapq.heappush(heap, (-nexts[i], b))
    return hits / len(reads)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capacity", type=int, default=1000, help="cache size in blocks")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--lookahead", type=int, default=2)
    args = ap.parse_args()
    steps = pipeline(args.runs, args.capacity)
    lru = replay(steps, args.capacity, LRUPolicy())
    pins = PinSet()
    aware = replay(steps, args.capacity, PinAwarePolicy(LRUPolicy(), pins), pins, args.lookahead)
    results = {
        "LRU": ratio(lru),
        "LRFU": ratio(replay(steps, args.capacity, LRFUPolicy(lam=1e-3, clock=_Tick()))),
        "pipeline-aware (LRU + pins)": ratio(aware),
        "Belady (optimum)": belady(steps, args.capacity),
    }
    distinct = len({b for s in steps for b in s.reads})
    reads = sum(len(s.reads) for s in steps)
    opt = results["Belady (optimum)"]
    lines = [
        "# Eviction on a pipeline trace",
        "",
        f"{args.runs} runs of a 4-step pipeline, {reads:,} block reads of {distinct:,} distinct blocks, "
        f"cache of {args.capacity:,} blocks; lookahead {args.lookahead}. By `python bench/eviction.py`.",
        "",
        "| policy | hit ratio | share of Belady's |",
        "|---|---|---|",
        *(f"| {k} | {v:.3f} | {v / opt:.2f} |" for k, v in results.items()),
        "",
        "Per step, pipeline-aware against LRU:",
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "eviction.json").write_text(
        json.dumps({"args": vars(args), "reads": reads, "distinct": distinct, "hit_ratio": results}, indent=2)
        + "\n"
    )
    last = steps[-1].run
    lines += ["| step (last run) | LRU | pipeline-aware |", "|---|---|---|"]
    lines += [
        f"| {a.step.name} | {a.hits / len(a.step.reads):.3f} | {b.hits / len(b.step.reads):.3f} |"
        for a, b in zip(lru, aware, strict=True)
        if a.step.run == last
    ]
    (RESULTS / "eviction.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


class _Tick:
    """A logical clock for LRFU: one tick per call (reads drive time, not the wall clock)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


if __name__ == "__main__":
    sys.exit(main())

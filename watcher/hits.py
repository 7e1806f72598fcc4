"""Measured hit ratios: how the reads of each step's held inputs were served, per step and run.

Workers count, per hold, the block reads of the hold's blocks they serve and whether each came
from memory or SSD (a hit) or from the under-store (a miss); the master sums them per hold
(``HoldInfo.reads``/``hits``). A step's hold lives from its preload to the step's end, so its
figures are the reads of the step's inputs made while they were held for it. The watcher reads
them while the step runs and once more just before it releases the hold; this module keeps the
latest figures per step and sums them per run. Pure: the service feeds it, and turns what it
returns into metrics and timeline records.

What it cannot tell: a block two steps' holds name (one step's output is the next one's input,
or two steps read the same data) counts a read for both holds, so the run's sum can count one
read twice (its ratio is still the share of hits); reads of data no hold names (outputs a step
writes, inputs the planner does not know) are not seen at all; and reads made in the last
heartbeat interval before the release reach the master too late to count.
"""

from __future__ import annotations

from dataclasses import dataclass

from .scheduler import RunRef


@dataclass(frozen=True)
class Reads:
    """Block reads and the hits among them."""

    reads: int = 0
    hits: int = 0

    @property
    def ratio(self) -> float | None:
        """Share of reads that were hits; None before the first read."""
        return self.hits / self.reads if self.reads else None

    def __add__(self, other: Reads) -> Reads:
        return Reads(self.reads + other.reads, self.hits + other.hits)


@dataclass(frozen=True)
class StepReads:
    """A timeline record: the reads of ``step``'s held inputs, final (its hold is released next)."""

    run: RunRef
    step: str
    hold: str
    reads: int
    hits: int
    ratio: float | None


class RunHits:
    """The latest figures of every step's hold, per run."""

    def __init__(self) -> None:
        self._runs: dict[str, dict[str, Reads]] = {}

    def update(self, run: str, step: str, seen: Reads) -> Reads:
        """The hold of ``step`` reports ``seen`` (cumulative); what the run's totals gained.

        Figures never go back (a master that restarted may report less than before): the
        larger of the old and the new is kept, so the gain is never negative.
        """
        steps = self._runs.setdefault(run, {})
        old = steps.get(step, Reads())
        new = Reads(max(old.reads, seen.reads), max(old.hits, seen.hits))
        steps[step] = new
        return Reads(new.reads - old.reads, new.hits - old.hits)

    def step(self, run: str, step: str) -> Reads:
        return self._runs.get(run, {}).get(step, Reads())

    def run(self, run: str) -> Reads:
        """The run's figures: the sum over its steps."""
        return sum(self._runs.get(run, {}).values(), Reads())

    def end(self, run: str) -> Reads:
        """Forget the run; its last figures."""
        total = self.run(run)
        self._runs.pop(run, None)
        return total

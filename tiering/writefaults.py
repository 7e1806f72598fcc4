"""When an SSD write failure is news: the first of a run, and the end of the run.

A full or failing disk makes every demotion fail, hundreds a second under
load. Logging each would drown the log; logging none (as before) left an
operator only a counter. ``WriteFaults`` says when to speak: once when writes
start failing, and once when they work again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class WriteFaults:
    """The state of a run of failed writes (not thread safe: the store's lock guards it)."""

    failing: int = 0
    """Writes failed since the last one that worked (0: writes work)."""

    def failed(self) -> bool:
        """Count a failed write; True if it starts a run (log it)."""
        self.failing += 1
        return self.failing == 1

    def succeeded(self) -> int:
        """A write worked; the length of the run it ends (0: there was none; log otherwise)."""
        run, self.failing = self.failing, 0
        return run

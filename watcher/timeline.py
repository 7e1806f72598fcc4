"""``--timeline FILE``: what the watcher did and measured, one JSON object per line, for reading
a run back (``StepReads`` lines carry each step's measured hit ratio)."""

from __future__ import annotations

import dataclasses
import json
from typing import IO, Any

from .hits import StepReads
from .scheduler import Action


def record(action: Action | StepReads, t: float) -> dict[str, Any]:
    """``{"t": seconds since the epoch, "action": "Submit", "run": "ns/name", ...fields}``."""
    fields = {f.name: getattr(action, f.name) for f in dataclasses.fields(action) if f.name != "run"}
    return {"t": round(t, 3), "action": type(action).__name__, "run": action.run.key, **fields}


class TimelineWriter:
    """An action hook appending :func:`record` lines to an open text file (flushed per line)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def __call__(self, action: Action | StepReads, t: float) -> None:
        self.out.write(json.dumps(record(action, t), default=list) + "\n")
        self.out.flush()

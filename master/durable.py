"""What of the master survives a restart: named providers journaled in one folder.

A provider owns one piece of durable state (``jobs`` here; holds, mounts or
pins may join). It gives ``snapshot()`` at a checkpoint and on start gets back
``restore(its snapshot)``, then its records written after it, in order. Two
ways to journal a change:

- ``Durable.record(name, verb, body)`` for an event; the provider must then be
  an ``EventProvider`` whose ``apply(verb, body)`` redoes it (load jobs: a
  record per job created or finished, whatever the history size);
- ``Durable.save(name)`` journals the provider's whole ``snapshot()``, replayed
  through ``restore``: no ``apply`` needed, right for small state.

Block locations are not journaled: workers re-register with full block
reports after a restart.

Without a data folder nothing is written and nothing is restored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .jobs import Job, JobManager
from .journal import Journal, Record

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 1000
"""Records after which the journal is folded into a fresh snapshot."""
JOB_HISTORY = 1000
"""Finished jobs kept (and journaled) for ``pipecache jobs``; the oldest are forgotten."""


SNAPSHOT_VERB = "snapshot"
"""Verb of the records ``save`` writes (never an event verb)."""


@runtime_checkable
class Provider(Protocol):
    """One named piece of durable state."""

    def snapshot(self) -> Any:
        """The whole state, msgpack-able."""

    def restore(self, snapshot: Any) -> None:
        """Replace the state with a ``snapshot()`` taken before a restart."""


@runtime_checkable
class EventProvider(Provider, Protocol):
    """A provider that journals events with ``Durable.record``."""

    def apply(self, verb: str, body: Any) -> None:
        """Redo one journaled event (raise KeyError, TypeError or ValueError if malformed)."""


class Durable:
    """The providers, and the journal they share once ``open`` ran."""

    def __init__(self, *, checkpoint_every: int = CHECKPOINT_EVERY) -> None:
        self.providers: dict[str, Provider] = {}
        self.journal: Journal | None = None
        self.checkpoint_every = checkpoint_every

    def register(self, name: str, provider: Provider) -> None:
        """Add a provider (before ``open``); ``name`` prefixes its record kinds."""
        if "/" in name or name in self.providers:
            raise ValueError(f"provider name {name!r} is taken or has a '/'")
        self.providers[name] = provider

    def open(self, path: str | Path, *, sync: bool = True) -> int:
        """Replay the folder into the providers and journal from now on; records replayed.

        Ends with a checkpoint, so the journal starts short and pruned state is dropped.
        """
        journal, snapshot, records = Journal.open(path, sync=sync)
        for name in self.providers:
            if name in snapshot:
                self._apply(Record(f"{name}/{SNAPSHOT_VERB}", snapshot[name]))
        for rec in records:
            self._apply(rec)
        self.journal = journal
        self.checkpoint()
        return len(records)

    def record(self, name: str, verb: str, body: Any) -> None:
        """Journal one event of provider ``name`` (nothing without a journal)."""
        if verb == SNAPSHOT_VERB:
            raise ValueError(f"{SNAPSHOT_VERB!r} is kept for save()")
        self._append(f"{name}/{verb}", body)

    def save(self, name: str) -> None:
        """Journal the whole state of provider ``name`` (nothing without a journal)."""
        if self.journal is not None:
            self._append(f"{name}/{SNAPSHOT_VERB}", self.providers[name].snapshot())

    def _append(self, kind: str, body: Any) -> None:
        if self.journal is None:
            return
        try:
            self.journal.append(kind, body)
        except OSError as exc:
            # A full or failing disk must not stop the cache: the event is lost to a restart.
            log.error("journal %s: %r not written: %s", self.journal.path, kind, exc)
            return
        if self.journal.appended >= self.checkpoint_every:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Fold the journal into a snapshot (on failure the journal just grows: retried later)."""
        if self.journal is None:
            return
        try:
            self.journal.checkpoint({n: p.snapshot() for n, p in self.providers.items()})
        except OSError as exc:
            log.error("journal %s: checkpoint failed, records kept: %s", self.journal.path, exc)

    def close(self) -> None:
        """Checkpoint and close (a clean shutdown replays nothing)."""
        if self.journal is not None:
            self.checkpoint()
            self.journal.close()
            self.journal = None

    def _apply(self, rec: Record) -> None:
        name, _, verb = rec.kind.partition("/")
        provider = self.providers.get(name)
        if provider is None:
            log.warning("journal record %r: no provider %r, skipped", rec.kind, name)
            return
        try:
            if verb == SNAPSHOT_VERB:
                provider.restore(rec.body)
            elif isinstance(provider, EventProvider):
                provider.apply(verb, rec.body)
            else:
                raise ValueError(f"provider {name!r} takes no events")
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("journal record %r is malformed (%r), skipped", rec.kind, exc)


# ---- load jobs ---------------------------------------------------------------------

_COUNTERS = (
    "objects_total",
    "objects_done",
    "bytes_total",
    "bytes_done",
    "blocks_total",
    "blocks_resident",
)


def created_body(job: Job, epoch_offset: float) -> dict[str, Any]:
    """What a restart needs to run the job again: id, paths, priority, hold, creation time."""
    return {
        "id": job.id,
        "paths": job.paths,
        "priority": job.priority,
        "hold": job.hold,
        "created": job.created + epoch_offset,
    }


def finished_body(job: Job, epoch_offset: float) -> dict[str, Any]:
    """The job's outcome and final counters."""
    return {
        "id": job.id,
        "state": job.state,
        "reason": job.reason,
        "updated": job.updated + epoch_offset,
        "failed": [[b, k, r] for (b, k), r in sorted(job.failed.items())],
        **{c: getattr(job, c) for c in _COUNTERS},
    }


class JobsProvider:
    """Load jobs as durable state: created and finished events, history bounded to ``keep``.

    Times are journaled as epoch seconds; ``clock`` gives the offset from the
    manager's (monotonic) clock to the epoch at the moment of the call.
    """

    def __init__(self, jobs: JobManager, clock: Callable[[], float], *, keep: int = JOB_HISTORY) -> None:
        self.jobs = jobs
        self.clock = clock
        self.keep = keep

    def snapshot(self) -> list[dict[str, Any]]:
        offset = self.clock()
        out = []
        for job in self.jobs.jobs():
            entry = created_body(job, offset)
            if job.finished:
                entry.update(finished_body(job, offset))
            out.append(entry)
        return out

    def restore(self, snapshot: Any) -> None:
        for entry in snapshot:
            self.apply("created", entry)
            if entry.get("state") in ("done", "failed", "cancelled"):
                self.apply("finished", entry)

    def apply(self, verb: str, body: Any) -> None:
        offset = self.clock()
        if verb == "created":
            created = float(body["created"]) - offset
            paths = [str(p) for p in body["paths"]]
            hold = str(body.get("hold", ""))
            self.jobs.restore(
                Job(str(body["id"]), paths, int(body["priority"]), created, hold=hold, updated=created)
            )
        elif verb == "finished":
            job = self.jobs.get(str(body["id"]))
            if job is None:
                return  # pruned from the history before this record was written
            job.state, job.reason = str(body["state"]), str(body["reason"])
            job.updated = float(body["updated"]) - offset
            job.failed = {(str(b), str(k)): str(r) for b, k, r in body["failed"]}
            for c in _COUNTERS:
                setattr(job, c, int(body[c]))
            self.jobs.prune(self.keep)
        else:
            raise ValueError(f"unknown job event {verb!r}")

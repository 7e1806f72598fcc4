"""Tenant cache quotas: the cluster-wide limits, and each worker's share of them.

Gateways register their tenants' quotas (``QuotaRequest``, idempotent: any
number of replicas send the same). The master journals them (the "quotas"
provider) and tells every worker its *share* in a "quota" command carried by
a heartbeat reply. Workers enforce their share locally (``tiering.quotas``).

Shares follow placement: blocks land by capacity-weighted rendezvous hashing,
so a worker with a fraction f of the live capacity gets about a fraction f of
a tenant's blocks, and gets ``quota * f`` (rounded down, so the shares never
add up to more than the quota). Shares are recomputed, and resent to the
workers whose share changed, when a quota changes or a worker joins, leaves
or re-registers (a worker that registers forgot nothing but gets its shares
again anyway: it may be a new process).

Approximate on purpose: a tenant whose blocks happen to hash unevenly hits
its share on one worker while it has room on another, and after membership
changes blocks sit where the old placement put them until they age out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..client.protocol import Command, QuotaRequest, WorkerInfo, check_tenant
from ..tiering.errors import BadRequest, UnknownWorker
from .state import ClusterState


def shares(quotas: Mapping[str, int], capacities: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """Worker id -> tenant -> bytes: each quota split in proportion to capacity, rounded down.

    Workers without capacity get 0 (they cache nothing anyway).
    """
    total = sum(max(c, 0) for c in capacities.values())
    out: dict[str, dict[str, int]] = {}
    for wid, cap in capacities.items():
        cap = max(cap, 0)
        out[wid] = {t: (q * cap // total if total else 0) for t, q in quotas.items()}
    return out


def capacities(workers: Iterable[WorkerInfo]) -> dict[str, int]:
    """Worker id -> bytes it may hold over all tiers (what placement weighs)."""
    return {w.worker_id: sum(w.capacity.values()) for w in workers}


class QuotaBook:
    """The cluster-wide quotas: a durable provider (snapshot/restore through ``Durable``)."""

    def __init__(self) -> None:
        self._quotas: dict[str, int] = {}

    def quotas(self) -> dict[str, int]:
        return dict(self._quotas)

    def update(self, req: QuotaRequest) -> bool:
        """Apply a request; whether anything changed."""
        before = dict(self._quotas)
        self._quotas.update(req.quotas)
        for name in req.unlimited:
            self._quotas.pop(name, None)
        return self._quotas != before

    def snapshot(self) -> dict[str, int]:
        return dict(self._quotas)

    def restore(self, snapshot: Any) -> None:
        if not isinstance(snapshot, dict):
            raise TypeError("quotas snapshot: expected a map")
        quotas: dict[str, int] = {}
        for name, limit in snapshot.items():
            try:
                check_tenant(str(name), "quotas snapshot")
            except BadRequest as exc:
                raise ValueError(exc.message) from None
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError(f"quotas snapshot: bad quota for {name!r}")
            quotas[str(name)] = limit
        self._quotas = quotas


@dataclass(eq=False)
class QuotaService:
    """Keeps every live worker's shares up to date by queuing "quota" commands."""

    state: ClusterState
    book: QuotaBook = field(default_factory=QuotaBook)
    sent: dict[str, dict[str, int]] = field(default_factory=dict)
    """Worker id -> the shares last queued for it."""

    def update(self, req: QuotaRequest) -> bool:
        """Set quotas and resend changed shares; whether anything changed (then journal it)."""
        changed = self.book.update(req)
        if changed:
            self.resend()
        return changed

    def on_register(self, worker_id: str) -> None:
        """A worker (re)registered: it gets its shares, and the others' may have changed."""
        self.sent.pop(worker_id, None)
        self.resend()

    def on_workers_gone(self, worker_ids: list[str]) -> None:
        if not worker_ids:
            return
        for w in worker_ids:
            self.sent.pop(w, None)
        self.resend()

    def resend(self) -> None:
        """Queue a "quota" command for every live worker whose share differs from the last sent.

        Nothing goes out while no tenant has ever had a quota (workers start without limits).
        """
        quotas = self.book.quotas()
        for wid, share in shares(quotas, capacities(self.state.workers())).items():
            last = self.sent.get(wid)
            if share == last or (last is None and not share):
                continue
            try:
                self.state.queue_command(wid, Command("quota", quotas=share))
            except UnknownWorker:
                continue
            self.sent[wid] = share

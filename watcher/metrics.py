"""The watcher's Prometheus metrics, on a registry of its own (several watchers per process in tests)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LEAD_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)


@dataclass(frozen=True, slots=True)
class WatcherMetrics:
    registry: CollectorRegistry
    jobs_submitted: Counter
    """Load jobs started on the master."""
    jobs_completed: Counter
    """Load jobs that ended done."""
    jobs_failed: Counter
    """Load jobs that ended failed, or that the master refused."""
    jobs_cancelled: Counter
    """Load jobs the watcher cancelled (their run ended or was deleted)."""
    lead_time: Histogram
    """Seconds between a step's inputs all being resident and the step starting."""
    late_steps: Counter
    """Steps that started before their preloaded inputs were all resident."""
    resident_at_start: Histogram
    """Share of a step's preloaded blocks resident when it started: the hit ratio its first
    reads can expect."""
    step_hit_ratio: Histogram
    """Measured share of the reads of a step's held inputs that were cache hits, per step, when
    its hold is released (``watcher.hits``)."""
    run_hit_ratio: Gauge
    """The same over a run's steps so far, by namespace and run."""
    run_reads: Counter
    """Block reads of a run's held inputs, by namespace and run (summed over its steps' holds)."""
    run_hits: Counter
    """Those of ``run_reads`` served from memory or SSD."""
    runs: Gauge
    """Runs being followed."""
    runs_ended: Counter
    """Runs that ended, by outcome (succeeded, failed, deleted)."""
    events: Counter
    """Kubernetes Events posted, by reason and result (ok, error)."""
    reconnects: Counter
    """Watch connections retried after an error, by error type."""
    relists: Counter
    """Full re-lists after 410 Gone."""
    plan_errors: Counter
    """Workflow objects that could not be planned."""

    @classmethod
    def create(cls) -> WatcherMetrics:
        reg = CollectorRegistry(auto_describe=True)
        p = "pipecache_watcher_"
        return cls(
            registry=reg,
            jobs_submitted=Counter(p + "jobs_submitted", "Load jobs started.", registry=reg),
            jobs_completed=Counter(p + "jobs_completed", "Load jobs done.", registry=reg),
            jobs_failed=Counter(p + "jobs_failed", "Load jobs failed or refused.", registry=reg),
            jobs_cancelled=Counter(p + "jobs_cancelled", "Load jobs cancelled.", registry=reg),
            lead_time=Histogram(
                p + "preload_lead_seconds",
                "Seconds between a step's inputs being resident and the step starting.",
                buckets=LEAD_BUCKETS,
                registry=reg,
            ),
            late_steps=Counter(
                p + "late_steps", "Steps that started before their inputs were resident.", registry=reg
            ),
            resident_at_start=Histogram(
                p + "step_resident_ratio",
                "Share of a step's preloaded blocks resident when it started.",
                buckets=(0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0),
                registry=reg,
            ),
            step_hit_ratio=Histogram(
                p + "step_hit_ratio",
                "Share of the reads of a step's held inputs that were cache hits.",
                buckets=(0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0),
                registry=reg,
            ),
            run_hit_ratio=Gauge(
                p + "run_hit_ratio",
                "Share of the reads of a run's held inputs that were cache hits.",
                ["namespace", "run"],
                registry=reg,
            ),
            run_reads=Counter(
                p + "run_reads", "Block reads of a run's held inputs.", ["namespace", "run"], registry=reg
            ),
            run_hits=Counter(
                p + "run_hits", "Block reads of a run's held inputs that were cache hits.",
                ["namespace", "run"], registry=reg,
            ),
            runs=Gauge(p + "runs", "Runs being followed.", registry=reg),
            runs_ended=Counter(p + "runs_ended", "Runs that ended, by outcome.", ["outcome"], registry=reg),
            events=Counter(p + "events", "Kubernetes Events posted.", ["reason", "result"], registry=reg),
            reconnects=Counter(
                p + "watch_reconnects", "Watch reconnects after errors.", ["error"], registry=reg
            ),
            relists=Counter(p + "watch_relists", "Re-lists after 410 Gone.", registry=reg),
            plan_errors=Counter(p + "plan_errors", "Workflows that could not be planned.", registry=reg),
        )

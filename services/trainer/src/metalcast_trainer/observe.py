"""The trainer's metrics and health: what ``/metrics`` and ``/healthz`` say.

:class:`TrainerObserver` is the loop's observer (``Trainer(observer=...)``): it hears of every
poll, every batch-loaded event received or skipped, every run started and its
:class:`RunReport` (status, per-metal backtest and fit times). :func:`trainer_health` is a pure
function of what it heard.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from metalcast_core import Health, since
from metalcast_trainer.runner import RunReport

# Per metal, a backtest of every candidate (seconds to minutes) or one production fit.
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
RUN_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
SUCCESS = frozenset({"succeeded", "unchanged"})


@dataclass
class TrainerObserver:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    clock: Callable[[], float] = time.time
    started_at: float = 0.0
    last_poll_at: float | None = None
    running_since: float | None = None
    last_status: str | None = None
    last_error: str | None = None
    last_run_id: int | None = None
    last_success_at: float | None = None
    failed_in_a_row: int = 0

    def __post_init__(self) -> None:
        r = self.registry
        self.started_at = self.clock()
        self.runs = Counter(
            "metalcast_trainer_runs",
            "Training runs finished, by status (succeeded, unchanged, partial, failed; "
            "error: the run could not even be recorded)",
            ["status"],
            registry=r,
        )
        self.run_duration = Histogram(
            "metalcast_trainer_run_duration_seconds",
            "Time of one training run, every metal",
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.stage_duration = Histogram(
            "metalcast_trainer_instrument_duration_seconds",
            "Time of one metal's backtest (every candidate) or production fit",
            ["symbol", "stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            "metalcast_trainer_last_success_timestamp_seconds",
            "Unix time the last run that succeeded (or found nothing to change) finished",
            registry=r,
        )
        self.in_progress = Gauge(
            "metalcast_trainer_run_in_progress", "1 while a training run is under way", registry=r
        )
        self.events = Counter(
            "metalcast_trainer_events_received",
            "batch-loaded events read from pipeline.batch-loaded.v1",
            registry=r,
        )
        self.skipped = Counter(
            "metalcast_trainer_events_skipped",
            "batch-loaded events that started no run, by reason (undecodable, no_new_window)",
            ["reason"],
            registry=r,
        )

    def polled(self) -> None:
        self.last_poll_at = self.clock()

    def received(self, events: int, skipped: Mapping[str, int]) -> None:
        self.events.inc(events)
        for reason, count in skipped.items():
            self.skipped.labels(reason).inc(count)

    def run_started(self) -> None:
        self.running_since = self.clock()
        self.in_progress.set(1)

    def run_finished(self, report: RunReport | None) -> None:
        now = self.clock()
        took = now - self.running_since if self.running_since is not None else None
        self.running_since = None
        self.in_progress.set(0)
        status = report.status if report is not None else "error"
        self.runs.labels(status).inc()
        if took is not None:
            self.run_duration.observe(took)
        self.last_status = status
        self.last_run_id = report.run_id if report is not None else None
        self.last_error = report.error if report is not None else "the run raised"
        if report is not None:
            for symbol, stages in report.symbol_timings.items():
                for stage, seconds in stages.items():
                    self.stage_duration.labels(symbol, stage.removesuffix("_s")).observe(seconds)
        if status in SUCCESS:
            self.last_success_at = now
            self.last_success.set(now)
        self.failed_in_a_row = self.failed_in_a_row + 1 if status in ("failed", "error") else 0

    def health(self, max_run_s: float, stall_s: float, failed_limit: int) -> Health:
        return trainer_health(self, self.clock(), max_run_s, stall_s, failed_limit)


def trainer_health(
    seen: TrainerObserver, now_s: float, max_run_s: float, stall_s: float, failed_limit: int
) -> Health:
    """Healthy unless a run has lasted ``max_run_s`` (stuck), the loop has not polled Kafka
    for ``stall_s`` outside a run, or the last ``failed_limit`` runs all failed. Pure."""
    now = _dt(now_s)
    details = {
        "last_run": seen.last_run_id,
        "last_status": seen.last_status,
        "last_success_at": _iso(seen.last_success_at),
        "running_since": _iso(seen.running_since),
    }
    if seen.running_since is not None:
        if now_s - seen.running_since >= max_run_s:
            return Health.unhealthy(
                f"a training run has been running since {since(_dt(seen.running_since), now)} "
                f"(threshold {max_run_s:.0f} s): stuck",
                **details,
            )
    else:
        polled = seen.last_poll_at if seen.last_poll_at is not None else seen.started_at
        if now_s - polled >= stall_s:
            what = "has not polled Kafka" if seen.last_poll_at is not None else "never polled"
            return Health.unhealthy(
                f"the loop {what} since {since(_dt(polled), now)} (threshold {stall_s:.0f} s)",
                **details,
            )
    if seen.failed_in_a_row >= failed_limit:
        return Health.unhealthy(
            f"the last {seen.failed_in_a_row} training runs failed, the latest "
            f"(#{seen.last_run_id}): {seen.last_error or 'no error recorded'}",
            **details,
        )
    return Health.healthy(**details)


def _dt(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, tz=UTC)


def _iso(unix_s: float | None) -> str | None:
    return _dt(unix_s).isoformat() if unix_s is not None else None

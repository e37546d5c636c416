"""The watch's rules: :func:`evaluate` is a pure function from what the watch saw
(:class:`Figures`) and its thresholds to problems, one sentence each."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from metalcast_core import (
    BARS_DLQ,
    BATCH_LOADED,
    MACRO,
    MACRO_DLQ,
    TICKS,
    TICKS_DLQ,
    DeadLetter,
    Topic,
)
from metalcast_watch.config import WatchSection

# Every dead-letter topic the watch follows: the sink's and the ingestor's poison ticks, the
# bars' (the ingestor's refused days and the bar sink's refused bars) and the macro
# observations' (FRED rows that do not parse, series not in macro.series).
DEAD_LETTER_TOPICS: tuple[Topic[DeadLetter], ...] = (TICKS_DLQ, BARS_DLQ, MACRO_DLQ)


@dataclass
class Figures:
    """What the watch saw. ``None`` where it could not look (the reason is in ``errors``)."""

    checked_at: datetime
    newest_tick: dict[str, datetime | None] = field(default_factory=dict)
    last_training: dict[str, Any] | None = None
    running_runs: list[dict[str, Any]] = field(default_factory=list)
    # unpublished batch-loaded events: how many, and the oldest one's commit time
    outbox_unpublished: int = 0
    outbox_oldest: datetime | None = None
    sink_lag: int | None = None
    trainer_lag: int | None = None
    # Per dead-letter topic (its registry name): {"end": the end offsets' sum now,
    # "previous": the sum the previous watch run saw, None on the first run}.
    dead_letters: dict[str, dict[str, int | None]] = field(default_factory=dict)
    # Macro series: series id -> {"frequency", "publication_lag_days", "newest_date" (None:
    # no observation), "newest_vintage", "last_loaded"}.
    macro: dict[str, dict[str, Any]] = field(default_factory=dict)
    macro_sink_lag: int | None = None
    # The workers' /healthz answers: name -> {"url", "status" (None: no answer), "body" or
    # "error"}.
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps(asdict(self), default=str)


def evaluate(figures: Figures, cfg: WatchSection) -> list[str]:
    """Every problem the figures show, as sentences for a task log. Pure."""
    problems = list(figures.errors)
    for symbol, newest in sorted(figures.newest_tick.items()):
        if newest is None:
            problems.append(f"no tick of {symbol} at all")
            continue
        age_min = (figures.checked_at - newest).total_seconds() / 60
        if age_min > cfg.max_tick_age_minutes:
            problems.append(
                f"stale data: the newest {symbol} tick is {age_min:.0f} min old "
                f"({newest:%Y-%m-%d %H:%M} UTC; threshold {cfg.max_tick_age_minutes:.0f} min)"
            )
    run = figures.last_training
    if cfg.fail_on_failed_training and run is not None and run.get("status") == "failed":
        problems.append(
            f"the last training run (#{run.get('id')}, started {run.get('started_at')}) failed: "
            f"{run.get('error') or 'no error recorded'}"
        )
    for running in figures.running_runs:
        started = running["started_at"]
        age_min = (figures.checked_at - started).total_seconds() / 60
        if age_min > cfg.max_run_minutes:
            problems.append(
                f"training run #{running['id']} is stuck: running for {age_min:.0f} min "
                f"(since {started:%Y-%m-%d %H:%M} UTC; threshold {cfg.max_run_minutes:.0f} min)"
            )
    if figures.outbox_oldest is not None:
        age_min = (figures.checked_at - figures.outbox_oldest).total_seconds() / 60
        if age_min > cfg.max_outbox_age_minutes:
            problems.append(
                f"the outbox is not draining: {figures.outbox_unpublished} batch-loaded "
                f"event(s) unpublished, the oldest for {age_min:.0f} min (threshold "
                f"{cfg.max_outbox_age_minutes:.0f} min)"
            )
    if figures.sink_lag is not None and figures.sink_lag > cfg.max_sink_lag:
        problems.append(
            f"the sink ({cfg.sink_group}) lags {figures.sink_lag} messages on {TICKS.name} "
            f"(threshold {cfg.max_sink_lag})"
        )
    if figures.trainer_lag is not None and figures.trainer_lag > cfg.max_trainer_lag:
        problems.append(
            f"the trainer ({cfg.trainer_group}) lags {figures.trainer_lag} messages on "
            f"{BATCH_LOADED.name} (threshold {cfg.max_trainer_lag})"
        )
    for topic, seen in sorted(figures.dead_letters.items()):
        end, previous = seen.get("end"), seen.get("previous")
        if cfg.fail_on_dlq_growth and end is not None and previous is not None and end > previous:
            problems.append(
                f"the dead-letter topic {topic} grew by {end - previous} messages since the "
                f"previous watch run ({previous} -> {end})"
            )
    for name, seen in sorted(figures.workers.items()):
        problem = worker_problem(name, seen)
        if problem is not None:
            problems.append(problem)
    problems += macro_problems(figures, cfg)
    return problems


def worker_problem(name: str, seen: dict[str, Any]) -> str | None:
    """A worker's /healthz answer as a problem (``None``: 200)."""
    status, url = seen.get("status"), seen.get("url")
    if status == 200:
        return None
    if status is None:
        return f"the {name}'s /healthz ({url}) did not answer: {seen.get('error')}"
    body = seen.get("body")
    reason = body.get("reason") if isinstance(body, dict) else None
    return f"the {name} is unhealthy (/healthz {status}): {reason or 'no reason given'}"


# Days between two observations of a series, by its macro.series frequency.
PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 31, "quarterly": 92}


def macro_problems(figures: Figures, cfg: WatchSection) -> list[str]:
    """Stale macro series (each named) and the macro sink's lag (the macro DLQ is one of
    ``DEAD_LETTER_TOPICS``)."""
    problems = []
    today = figures.checked_at.date()
    for series, seen in sorted(figures.macro.items()):
        newest = seen.get("newest_date")
        if newest is None:
            if cfg.require_macro:
                problems.append(f"no observation of the macro series {series} at all")
            continue
        allowed = (
            PERIOD_DAYS.get(str(seen.get("frequency")), 1)
            + int(seen.get("publication_lag_days") or 0)
            + cfg.macro_slack_days
        )
        age = (today - newest).days
        if age > allowed:
            problems.append(
                f"stale macro series {series}: the newest observation is for {newest} "
                f"({age} days old; {seen.get('frequency')} with a "
                f"{seen.get('publication_lag_days')}-day publication lag allows {allowed}), "
                f"last loaded {seen.get('last_loaded')}"
            )
    if figures.macro_sink_lag is not None and figures.macro_sink_lag > cfg.max_sink_lag:
        problems.append(
            f"the macro sink ({cfg.macro_sink_group}) lags {figures.macro_sink_lag} messages "
            f"on {MACRO.name} (threshold {cfg.max_sink_lag})"
        )
    return problems

"""Daily bars on a schedule (``metalcast ingest bars --schedule``): once a day after the US
close, every catalogued equity and ETF with an Alpha Vantage id, within the day's request
budget.

* **When**: every day at ``bars_at`` (UTC; default 22:30, after the 16:00 New York close in
  winter and summer alike), and at start-up.
* **What is due**: a symbol not fetched since the latest weekday close (``bars_at`` of the
  latest Monday to Friday at or before now). A restart fetches nothing twice; a weekend run
  fetches only what was deferred.
* **Within the budget**: the due symbols, those fetched longest ago first (never fetched:
  first of all), as many as the day's requests left (less ``bars_reserve``, kept for hands-on
  runs); the rest are **deferred**: said in the run's report and the log, first in line at
  the next run. With more symbols than requests a day, each is fetched every few days; the
  compact answer (100 trading days) closes the gap.
* A budget spent or a throttled provider mid-run stops the run; the symbols not reached are
  deferred. A symbol the provider refuses (unknown, premium-only) counts as fetched: its
  request was spent, and it is tried again after the next close.

The ledger (``bars_ledger_file``: symbol -> when last fetched) lives beside the request
budget's file, so every run on the machine shares it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from metalcast_ingestor.publisher import BarPublisher, PublishStats
from metalcast_ingestor.runner import fetch_bars
from metalcast_ingestor.sources._budget import RequestBudget
from metalcast_ingestor.sources.alphavantage import AlphaVantageSource
from metalcast_ingestor.sources.base import SourceUnavailable

log = logging.getLogger(__name__)

# Catalogue kinds whose daily bars the schedule fetches.
SCHEDULED_KINDS = frozenset({"equity", "etf"})


def last_close(now: datetime, at: time) -> datetime:
    """The latest weekday (Monday to Friday) ``at`` (UTC) at or before ``now``."""
    day = now.astimezone(UTC).date()
    while True:
        candidate = datetime.combine(day, at, UTC)
        if candidate <= now and candidate.weekday() < 5:
            return candidate
        day -= timedelta(days=1)


def next_run(now: datetime, at: time) -> datetime:
    """The next ``at`` (UTC) strictly after ``now``: every day, weekends included (they
    fetch what the weekdays deferred)."""
    candidate = datetime.combine(now.astimezone(UTC).date(), at, UTC)
    return candidate if candidate > now else candidate + timedelta(days=1)


@dataclass(frozen=True)
class BarPlan:
    """What one scheduled run fetches now, defers, and leaves alone."""

    close: datetime
    now: list[str]
    deferred: list[str]
    fresh: list[str]  # fetched since the latest close already
    budget_left: int

    def as_json(self) -> dict[str, Any]:
        return {
            "close": self.close.isoformat(),
            "now": self.now,
            "deferred": self.deferred,
            "fresh": self.fresh,
            "budget_left": self.budget_left,
        }


def plan(
    symbols: Sequence[str],
    fetched: Mapping[str, datetime],
    now: datetime,
    at: time,
    left: int,
) -> BarPlan:
    """The symbols due since the latest close, oldest fetch first, cut at ``left``."""
    close = last_close(now, at)
    oldest = datetime.min.replace(tzinfo=UTC)
    due = sorted(
        (s for s in symbols if fetched.get(s, oldest) < close),
        key=lambda s: (fetched.get(s, oldest), s),
    )
    fresh = sorted(s for s in symbols if s not in due)
    room = max(0, left)
    return BarPlan(close, due[:room], due[room:], fresh, left)


class BarLedger:
    """When each symbol's bars were last fetched, in a small JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, datetime]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        out: dict[str, datetime] = {}
        for symbol, stamp in (data if isinstance(data, dict) else {}).items():
            try:
                out[str(symbol)] = datetime.fromisoformat(str(stamp))
            except ValueError:
                continue  # a damaged entry: that symbol is due again
        return out

    def mark(self, symbol: str, when: datetime) -> None:
        data = {s: t.isoformat() for s, t in self.read().items()}
        data[symbol] = when.isoformat()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".bars-")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)


@dataclass
class BarRunReport:
    plan: BarPlan
    fetched: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    stopped: str | None = None
    stats: PublishStats = field(default_factory=PublishStats)
    failures: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan.as_json(),
            "fetched": self.fetched,
            "deferred": self.deferred,
            "stopped": self.stopped,
            "published": self.stats.published,
            "dead_lettered": self.stats.dead_lettered,
            "by_symbol": dict(self.stats.by_symbol),
            "failures": self.failures,
        }


async def run_planned(
    source: AlphaVantageSource,
    symbols: Sequence[str],
    publisher: BarPublisher,
    budget: RequestBudget,
    ledger: BarLedger,
    now: datetime,
    at: time,
    reserve: int = 0,
    full: bool = False,
) -> BarRunReport:
    """One scheduled run: plan within the budget, fetch one symbol at a time (each marked in
    the ledger once published), defer the rest, and report."""
    left = budget.status(source.name).left - reserve
    chosen = plan(symbols, ledger.read(), now, at, left)
    report = BarRunReport(chosen, deferred=list(chosen.deferred))
    failures_before = len(source.failures)
    for i, symbol in enumerate(chosen.now):
        try:
            report.stats.add(await fetch_bars(source, [symbol], full, publisher, False))
        except SourceUnavailable as exc:  # the day's budget spent, or throttled: later
            report.stopped = str(exc)
            report.deferred = [*chosen.now[i:], *report.deferred]
            break
        ledger.mark(symbol, now)
        report.fetched.append(symbol)
    report.failures = list(source.failures[failures_before:])
    if report.deferred:
        log.warning(
            "%s: %d symbol(s) deferred to the next run (%d requests left today%s): %s",
            source.name,
            len(report.deferred),
            max(0, left),
            f"; stopped: {report.stopped}" if report.stopped else "",
            ", ".join(report.deferred),
        )
    log.info(
        "%s bars: fetched %d symbol(s) (%d bars, %d dead-lettered), deferred %d, fresh %d",
        source.name,
        len(report.fetched),
        report.stats.published,
        report.stats.dead_lettered,
        len(report.deferred),
        len(chosen.fresh),
    )
    return report


async def run_bars_schedule(
    run: Callable[[datetime], Awaitable[BarRunReport]],
    at: time,
    stop: asyncio.Event,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_report: Callable[[BarRunReport], None] | None = None,
    wait: Callable[[float, asyncio.Event], Awaitable[None]] | None = None,
) -> None:
    """Run at once (what is due since the latest close), then every day at ``at`` until
    ``stop``. A run that raises is logged; the next one goes on. ``wait(seconds, stop)``:
    how the loop waits for the next run (default: until the time, or ``stop``)."""
    pause = wait or _wait
    while not stop.is_set():
        try:
            report = await run(clock())
            if on_report is not None:
                on_report(report)
        except Exception:
            log.exception("scheduled daily bars run failed; the next run tries again")
        if stop.is_set():
            break
        now = clock()
        await pause(max(0.0, (next_run(now, at) - now).total_seconds()), stop)


async def _wait(seconds: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)

"""The ingestor's metrics and health (schedule mode): what ``/metrics`` and ``/healthz`` say.

:class:`IngestorObserver` is polling's observer (``run_schedule(observer=...)``): per source,
the ticks it published, its dead letters, its errors by kind and its last successful fetch.
:func:`ingestor_health` is a pure function of what it heard.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from metalcast_core import Health, since
from metalcast_ingestor.publisher import PublishStats
from metalcast_ingestor.sources.base import Fetched, Rejected, SourceError

POLL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def error_kind(error: BaseException) -> str:
    """``timeout``, ``network``, ``http_<status>``, ``unavailable``, ... or ``error`` (a bug)."""
    if isinstance(error, SourceError):
        return error.kind
    if isinstance(error, httpx.TimeoutException):
        return "timeout"
    return "error"


@dataclass
class SourceState:
    last_success_at: float | None = None
    last_error: str | None = None  # of the last poll; None when it succeeded
    last_error_at: float | None = None


@dataclass
class IngestorObserver:
    sources: Sequence[str]
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    clock: Callable[[], float] = time.time
    started_at: float = 0.0
    last_poll_at: float | None = None
    state: dict[str, SourceState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = self.registry
        self.started_at = self.clock()
        self.state = {name: SourceState() for name in self.sources}
        self.published = Counter(
            "metalcast_ingestor_ticks_published",
            "Ticks published to prices.ticks.v1, by source",
            ["source"],
            registry=r,
        )
        self.dead_letters = Counter(
            "metalcast_ingestor_dead_letters",
            "Fetched items sent to prices.ticks.dlq instead, by source",
            ["source"],
            registry=r,
        )
        self.errors = Counter(
            "metalcast_ingestor_provider_errors",
            "Failed fetches (after the retries) and refused payload items, by source and kind "
            "(timeout, network, http_<status>, bad_payload, ...)",
            ["source", "kind"],
            registry=r,
        )
        self.last_success = Gauge(
            "metalcast_ingestor_last_success_timestamp_seconds",
            "Unix time of the last successful fetch, by source (0: none yet)",
            ["source"],
            registry=r,
        )
        self.polls = Counter("metalcast_ingestor_polls", "Polls of every source", registry=r)
        self.poll_duration = Histogram(
            "metalcast_ingestor_poll_duration_seconds",
            "Time of one poll: every source fetched and published",
            buckets=POLL_BUCKETS,
            registry=r,
        )
        for name in self.sources:  # every source shows, before its first poll too
            self.published.labels(name)
            self.last_success.labels(name).set(0)

    def fetched(self, source: str, items: Sequence[Fetched], stats: PublishStats) -> None:
        now = self.clock()
        state = self.state.setdefault(source, SourceState())
        state.last_success_at, state.last_error, state.last_error_at = now, None, None
        self.last_success.labels(source).set(now)
        self.published.labels(source).inc(stats.published)
        self.dead_letters.labels(source).inc(stats.dead_lettered)
        rejected = sum(1 for item in items if isinstance(item, Rejected))
        if rejected:
            self.errors.labels(source, "bad_payload").inc(rejected)

    def failed(self, source: str, error: BaseException) -> None:
        state = self.state.setdefault(source, SourceState())
        state.last_error = f"{type(error).__name__}: {error}"
        state.last_error_at = self.clock()
        self.errors.labels(source, error_kind(error)).inc()

    def polled(self, seconds: float) -> None:
        self.last_poll_at = self.clock()
        self.polls.inc()
        self.poll_duration.observe(seconds)

    def health(self, interval_s: float, stall_s: float) -> Health:
        return ingestor_health(self, self.clock(), interval_s, stall_s)


def ingestor_health(
    seen: IngestorObserver, now_s: float, interval_s: float, stall_s: float
) -> Health:
    """Healthy unless no poll finished for ``interval_s + stall_s`` (the schedule is stuck) or
    every source failed its last poll. One failing source among others is in the details. Pure."""
    now = _dt(now_s)
    details = {
        "last_poll_at": _iso(seen.last_poll_at),
        "sources": {
            name: {"last_success_at": _iso(s.last_success_at), "last_error": s.last_error}
            for name, s in sorted(seen.state.items())
        },
    }
    polled = seen.last_poll_at if seen.last_poll_at is not None else seen.started_at
    if now_s - polled >= interval_s + stall_s:
        what = "no poll has finished" if seen.last_poll_at is not None else "no first poll"
        return Health.unhealthy(
            f"{what} since {since(_dt(polled), now)} (interval {interval_s:.0f} s, "
            f"grace {stall_s:.0f} s)",
            **details,
        )
    failing = {n: s for n, s in seen.state.items() if s.last_error is not None}
    if seen.state and len(failing) == len(seen.state):
        return Health.unhealthy(
            "every source failed its last poll: "
            + "; ".join(
                f"{name} (last success "
                + (since(_dt(s.last_success_at), now) if s.last_success_at else "never")
                + f"): {s.last_error}"
                for name, s in sorted(failing.items())
            ),
            **details,
        )
    return Health.healthy(**details)


def _dt(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, tz=UTC)


def _iso(unix_s: float | None) -> str | None:
    return _dt(unix_s).isoformat() if unix_s is not None else None

"""The sink's metrics and health: what ``/metrics`` and ``/healthz`` say.

The counters are read from :class:`SinkStats` when scraped (the loop counts once, in one
place); per batch, :meth:`SinkObserver.stored` (``Sink.on_stored``) times the write stage and
sorts dead letters by reason class; :func:`watch_lag` refreshes the consumer lag every few
seconds. :func:`sink_health` is a pure function of what the observer saw.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from metalcast_core import DeadLetter, Health, since
from metalcast_sink.service import SinkStats

log = logging.getLogger(__name__)

BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def reason_class(reason: str) -> str:
    """A dead letter's reason as one of a few classes (a metric label must not carry values)."""
    if reason.startswith("refused by the database"):
        return "database_refused"
    if reason.startswith("unknown symbol"):
        return "unknown_symbol"
    if reason.startswith("observed_at"):
        return "bad_timestamp"
    if reason.startswith("empty message"):
        return "empty"
    return "invalid"


class _StatsCollector(Collector):
    """The loop's own counters, read at scrape time."""

    def __init__(self, stats: SinkStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        counters = (
            ("batches", "Batches written to PostgreSQL (one transaction each)", s.batches),
            ("ticks_received", "Messages read from prices.ticks.v1", s.ticks_received),
            ("rows_written", "Ticks stored in prices.ticks (new rows only)", s.rows_inserted),
            ("db_retries", "Database attempts retried (unreachable, or a deadlock)", s.db_retries),
            ("outbox_relayed", "batch-loaded events published by the outbox relay", s.relayed),
            ("decode_seconds", "Time spent decoding messages into rows", s.decode_s),
            ("write_seconds", "Time spent in batches' database transactions", s.write_s),
        )
        for name, doc, value in counters:
            yield CounterMetricFamily(f"metalcast_sink_{name}", doc, value=value)
        yield GaugeMetricFamily(
            "metalcast_sink_database_up",
            "1 while the database answers, 0 since a connection attempt failed",
            value=0 if s.db_unavailable_since is not None else 1,
        )


@dataclass
class SinkObserver:
    """What ``/metrics`` and ``/healthz`` read; fed by the loop's hook and :func:`watch_lag`."""

    stats: SinkStats
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    clock: Callable[[], float] = time.time
    lag: dict[TopicPartition, int] = field(default_factory=dict)
    lag_error: str | None = None
    lag_error_since: float | None = None
    started_at: float = 0.0
    last_batch_at: float | None = None

    def __post_init__(self) -> None:
        r = self.registry
        self.started_at = self.clock()
        r.register(_StatsCollector(self.stats))
        self.batch_latency = Histogram(
            "metalcast_sink_batch_write_duration_seconds",
            "Time to write one batch to PostgreSQL (its transaction, retries included)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.dead_letters = Counter(
            "metalcast_sink_dead_letters",
            "Messages sent to prices.ticks.dlq, by reason class",
            ["reason"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "metalcast_sink_consumer_lag",
            "Messages in prices.ticks.v1 not yet read: end offset - position, per partition",
            ["topic", "partition"],
            registry=r,
        )
        self.last_batch = Gauge(
            "metalcast_sink_last_batch_timestamp_seconds",
            "Unix time the last batch was written (0: none yet)",
            registry=r,
        )

    def stored(self, write_s: float, dead: Sequence[DeadLetter]) -> None:
        """``Sink.on_stored``: one batch is committed."""
        self.last_batch_at = self.clock()
        self.last_batch.set(self.last_batch_at)
        self.batch_latency.observe(write_s)
        for reason, count in collections.Counter(reason_class(d.reason) for d in dead).items():
            self.dead_letters.labels(reason).inc(count)

    def lag_read(self, lag: Mapping[TopicPartition, int]) -> None:
        for tp in set(self.lag) - set(lag):
            with contextlib.suppress(KeyError):
                self.consumer_lag.remove(tp.topic, str(tp.partition))
        self.lag = dict(lag)
        for tp, value in lag.items():
            self.consumer_lag.labels(tp.topic, str(tp.partition)).set(value)
        self.lag_error = self.lag_error_since = None

    def lag_failed(self, error: str) -> None:
        self.lag_error = error
        if self.lag_error_since is None:
            self.lag_error_since = self.clock()

    def health(self, stall_s: float) -> Health:
        return sink_health(self, self.clock(), stall_s)


def sink_health(seen: SinkObserver, now_s: float, stall_s: float) -> Health:
    """Healthy unless the database is unreachable, Kafka's offsets cannot be read for
    ``stall_s``, or no batch was written for ``stall_s`` while messages wait. Pure."""
    now = _dt(now_s)
    stats = seen.stats
    lag = sum(seen.lag.values())
    last = seen.last_batch_at
    details = {
        "batches": stats.batches,
        "lag": lag,
        "last_batch_at": _dt(last).isoformat() if last is not None else None,
    }
    if stats.db_unavailable_since is not None:
        return Health.unhealthy(
            f"database unavailable since {since(_dt(stats.db_unavailable_since), now)}: "
            f"{stats.db_error or 'no error recorded'}",
            **details,
        )
    if seen.lag_error_since is not None and now_s - seen.lag_error_since >= stall_s:
        return Health.unhealthy(
            f"cannot read Kafka's offsets since {since(_dt(seen.lag_error_since), now)}: "
            f"{seen.lag_error}",
            **details,
        )
    progress = last if last is not None else seen.started_at
    if lag > 0 and now_s - progress >= stall_s:
        return Health.unhealthy(
            f"no batch for {now_s - progress:.0f} s while {lag} message(s) wait "
            f"(threshold {stall_s:.0f} s)",
            **details,
        )
    return Health.healthy(**details)


def _dt(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, tz=UTC)


class LagSource(Protocol):
    """What :func:`watch_lag` asks of the consumer (an ``AIOKafkaConsumer``)."""

    def assignment(self) -> set[TopicPartition]: ...

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...

    async def position(self, partition: TopicPartition) -> int: ...


async def read_lag(consumer: LagSource) -> dict[TopicPartition, int]:
    """End offset - position for each assigned partition (one that has no position yet, in
    the middle of a rebalance, is left out)."""
    assigned = sorted(consumer.assignment())
    if not assigned:
        return {}
    ends = await consumer.end_offsets(assigned)
    lag = {}
    for tp in assigned:
        try:
            position = await asyncio.wait_for(consumer.position(tp), 1.0)
        except Exception:  # no position yet (being placed), or no longer ours
            continue
        lag[tp] = max(0, ends[tp] - position)
    return lag


async def watch_lag(consumer: LagSource, seen: SinkObserver, every_s: float) -> None:
    """Refresh the lag every ``every_s`` until cancelled."""
    while True:
        try:
            seen.lag_read(await asyncio.wait_for(read_lag(consumer), max(every_s, 5.0)))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            seen.lag_failed(f"{type(exc).__name__}: {exc}")
            log.warning("cannot read the consumer lag: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(every_s)

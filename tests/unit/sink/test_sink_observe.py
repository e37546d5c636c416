"""The sink's metrics and health rules (metalcast_sink.observe) with fakes: no servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg
from aiokafka import TopicPartition

from metalcast_core import DeadLetter
from metalcast_sink.config import SinkSection, SinkSettings
from metalcast_sink.observe import SinkObserver, read_lag, reason_class, sink_health
from metalcast_sink.service import Sink, SinkStats
from tests.unit.sink.test_sink_service import FakeConsumer as FakeLoopConsumer
from tests.unit.sink.test_sink_service import FakeProducer

T = 1_790_000_000.0  # a Unix time
TP0, TP1 = TopicPartition("prices.ticks.v1", 0), TopicPartition("prices.ticks.v1", 1)


class Clock:
    def __init__(self) -> None:
        self.now = T

    def __call__(self) -> float:
        return self.now


def observer() -> tuple[SinkObserver, Clock]:
    clock = Clock()
    return SinkObserver(SinkStats(), clock=clock), clock


def letter(reason: str) -> DeadLetter:
    return DeadLetter(stage="sink", source="t", reason=reason, original=b"x")


def value(seen: SinkObserver, name: str, **labels: str) -> float | None:
    return seen.registry.get_sample_value(name, labels)


def test_reason_classes_cover_the_sinks_reasons() -> None:
    assert reason_class("refused by the database: numeric field overflow") == "database_refused"
    assert reason_class("unknown symbol 'XXX'; known: XAG, XAU") == "unknown_symbol"
    assert reason_class("observed_at 2099-01-01T00:00:00+00:00 is in the future") == (
        "bad_timestamp"
    )
    assert reason_class("empty message (tombstone)") == "empty"
    assert reason_class("price: Input should be greater than 0") == "invalid"


def test_counters_are_read_from_the_loops_stats_when_scraped() -> None:
    seen, _ = observer()
    seen.stats.batches, seen.stats.ticks_received, seen.stats.rows_inserted = 2, 250, 120
    seen.stats.db_retries, seen.stats.relayed = 3, 1
    assert value(seen, "metalcast_sink_batches_total") == 2
    assert value(seen, "metalcast_sink_ticks_received_total") == 250
    assert value(seen, "metalcast_sink_rows_written_total") == 120
    assert value(seen, "metalcast_sink_db_retries_total") == 3
    assert value(seen, "metalcast_sink_outbox_relayed_total") == 1
    assert value(seen, "metalcast_sink_database_up") == 1
    seen.stats.db_unavailable_since = T
    assert value(seen, "metalcast_sink_database_up") == 0


def test_each_stored_batch_is_timed_and_its_dead_letters_counted_by_class() -> None:
    seen, clock = observer()
    seen.stored(0.2, [letter("unknown symbol 'ZZZ'"), letter("x: not JSON")])
    clock.now += 10
    seen.stored(3.0, [letter("unknown symbol 'QQQ'")])
    assert value(seen, "metalcast_sink_batch_write_duration_seconds_count") == 2
    assert value(seen, "metalcast_sink_batch_write_duration_seconds_sum") == 3.2
    assert value(seen, "metalcast_sink_batch_write_duration_seconds_bucket", le="0.25") == 1
    assert value(seen, "metalcast_sink_dead_letters_total", reason="unknown_symbol") == 2
    assert value(seen, "metalcast_sink_dead_letters_total", reason="invalid") == 1
    assert value(seen, "metalcast_sink_last_batch_timestamp_seconds") == T + 10


def test_lag_gauges_follow_the_assignment() -> None:
    seen, _ = observer()
    seen.lag_read({TP0: 5, TP1: 0})
    assert value(seen, "metalcast_sink_consumer_lag", topic=TP0.topic, partition="0") == 5
    seen.lag_read({TP1: 2})  # partition 0 went to another sink
    assert value(seen, "metalcast_sink_consumer_lag", topic=TP0.topic, partition="0") is None
    assert value(seen, "metalcast_sink_consumer_lag", topic=TP1.topic, partition="1") == 2


def test_healthy_while_idle_and_caught_up_however_long() -> None:
    seen, clock = observer()
    seen.lag_read({TP0: 0})
    clock.now += 3600
    health = seen.health(120)
    assert health.ok, health.reason
    assert health.details == {"batches": 0, "lag": 0, "last_batch_at": None}


def test_unhealthy_when_no_batch_for_the_stall_time_while_messages_wait() -> None:
    seen, clock = observer()
    seen.stored(0.1, [])
    seen.lag_read({TP0: 40, TP1: 2})
    clock.now += 119
    assert seen.health(120).ok
    clock.now += 2
    health = seen.health(120)
    assert not health.ok
    assert health.reason == "no batch for 121 s while 42 message(s) wait (threshold 120 s)"


def test_unhealthy_at_once_while_the_database_is_unavailable_naming_since_when() -> None:
    seen, clock = observer()
    seen.stats.db_unavailable_since = T
    seen.stats.db_error = "ConnectionRefusedError: [Errno 111] Connect call failed"
    clock.now += 30
    health = sink_health(seen, clock.now, 120)
    assert not health.ok
    assert health.reason == (
        "database unavailable since 2026-09-21T14:13:20Z (30 s ago): "
        "ConnectionRefusedError: [Errno 111] Connect call failed"
    )
    seen.stats.db_unavailable_since = None  # the next attempt succeeded
    assert sink_health(seen, clock.now, 120).ok


def test_unhealthy_when_kafkas_offsets_cannot_be_read_for_the_stall_time() -> None:
    seen, clock = observer()
    seen.lag_failed("KafkaConnectionError: no broker")
    clock.now += 60
    assert seen.health(120).ok  # a blip is not an outage
    clock.now += 60
    health = seen.health(120)
    assert not health.ok
    assert health.reason.startswith("cannot read Kafka's offsets since ")
    assert health.reason.endswith("(120 s ago): KafkaConnectionError: no broker")
    seen.lag_read({})
    assert seen.health(120).ok


class FakeConsumer:
    def __init__(self, ends: dict[TopicPartition, int], positions: dict[TopicPartition, int]):
        self.ends, self.positions = ends, positions

    def assignment(self) -> set[TopicPartition]:
        return set(self.ends)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in partitions}

    async def position(self, partition: TopicPartition) -> int:
        if partition not in self.positions:
            raise RuntimeError("no position yet")
        return self.positions[partition]


async def test_read_lag_is_end_minus_position_skipping_partitions_without_one() -> None:
    consumer = FakeConsumer({TP0: 100, TP1: 7}, {TP0: 60})
    assert await read_lag(consumer) == {TP0: 40}
    assert await read_lag(FakeConsumer({}, {})) == {}


class QuietConnection:
    """A database with nothing in the outbox."""

    async def fetch(self, *args: object) -> list[object]:
        return []

    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    def is_closed(self) -> bool:
        return False

    async def close(self) -> None:
        return None


class IdleConsumer(FakeLoopConsumer):
    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, Any]:
        await asyncio.sleep(timeout_ms / 1000)
        return {}


async def soon(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5 s")


async def test_an_idle_sink_notices_the_database_going_away_and_coming_back() -> None:
    """No batch needs the database, yet the outbox relay's round trips tell /healthz."""
    up = True

    async def connect() -> asyncpg.Connection:
        if not up:
            raise ConnectionRefusedError(111, "Connect call failed")
        return QuietConnection()

    settings = SinkSettings(sink=SinkSection(relay_every_s=0.05, batch_timeout_ms=20))
    sink = Sink(settings, IdleConsumer([]), FakeProducer(), connect)
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop=stop))
    try:
        await asyncio.sleep(0.15)
        assert sink.stats.db_unavailable_since is None
        up = False
        await soon(lambda: sink.stats.db_unavailable_since is not None)
        assert sink.stats.db_error == "ConnectionRefusedError: [Errno 111] Connect call failed"
        up = True
        await soon(lambda: sink.stats.db_unavailable_since is None)
        assert sink.stats.db_error is None
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)

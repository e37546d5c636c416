"""The sink's loop with fakes for Kafka and the database: how it stops and what it commits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from metalcast_core import TICKS, PriceTick
from metalcast_sink.config import SinkSection, SinkSettings
from metalcast_sink.service import Sink

TOPIC = "prices.ticks.v1"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def records(n: int, partition: int = 0) -> list[ConsumerRecord[bytes, bytes]]:
    out = []
    for i in range(n):
        tick = PriceTick(symbol="XAU", source="t", observed_at=T0 + timedelta(hours=i), price=1.0)
        value = TICKS.encode(tick)
        out.append(
            ConsumerRecord(TOPIC, partition, i, 0, 0, b"XAU", value, None, 3, len(value), [])
        )
    return out


class FakeConsumer:
    """Hands out the records in slices, as ``getmany`` does; remembers commits."""

    def __init__(self, batch: list[ConsumerRecord[bytes, bytes]]) -> None:
        self.tp = TopicPartition(TOPIC, 0)
        self._slices: Iterator[list[ConsumerRecord[bytes, bytes]]] = iter(
            [batch[i : i + 1000] for i in range(0, len(batch), 1000)]
        )
        self.commits: list[dict[TopicPartition, int]] = []

    async def getmany(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        await asyncio.sleep(0)
        part = next(self._slices, [])
        return {self.tp: part} if part else {}

    def assignment(self) -> set[TopicPartition]:
        return {self.tp}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    async def position(self, tp: TopicPartition) -> int:
        return 0

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)


class FakeProducer:
    async def send_and_wait(self, *args: Any, **kwargs: Any) -> None:
        return None


class FailingTransaction:
    async def __aenter__(self) -> None:
        await asyncio.sleep(0.2)  # meanwhile the reader fills the queue
        raise RuntimeError("the database refused in an unexpected way")

    async def __aexit__(self, *exc: object) -> None:
        return None


class ExplodingConnection:
    """A database connection whose every transaction fails (not a connection problem)."""

    async def fetch(self, *args: Any) -> list[Any]:
        return []  # an empty outbox

    def transaction(self) -> FailingTransaction:
        return FailingTransaction()

    def is_closed(self) -> bool:
        return False

    async def close(self) -> None:
        return None


async def test_a_failing_writer_stops_the_sink_instead_of_hanging_with_a_full_queue() -> None:
    consumer = FakeConsumer(records(20_000))

    async def connect() -> asyncpg.Connection:
        return ExplodingConnection()

    settings = SinkSettings(sink=SinkSection(max_batch=2_000))  # the queue fills up
    sink = Sink(settings, consumer, FakeProducer(), connect)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="unexpected way"):
        await asyncio.wait_for(sink.run(until_idle=True), 10)
    assert time.monotonic() - started < 5  # at once, not when the timeout cancels it
    assert consumer.commits == []  # nothing was stored, so no offset moved


class PositionsConnection:
    """Answers ``load_positions`` with fixed rows; counts connections closed."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    async def fetch(self, *args: Any) -> list[dict[str, Any]]:
        return self.rows

    async def close(self) -> None:
        return None


class SeekingConsumer(FakeConsumer):
    """Partitions 0-3 whose logs keep offsets [earliest, end); remembers seeks."""

    def __init__(self, earliest: dict[int, int], end: dict[int, int]) -> None:
        super().__init__([])
        self.earliest = {TopicPartition(TOPIC, p): o for p, o in earliest.items()}
        self.end = {TopicPartition(TOPIC, p): o for p, o in end.items()}
        self.seeks: dict[TopicPartition, int] = {}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.earliest[tp] for tp in tps}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.end[tp] for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset


async def test_an_assignment_resumes_from_the_positions_stored_with_the_rows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stored = [
        {"topic": TOPIC, "partition": 0, "next_offset": 40},  # within the log: seek there
        {"topic": TOPIC, "partition": 1, "next_offset": 5},  # before the log's start: lost
        {"topic": TOPIC, "partition": 2, "next_offset": 900},  # past the end: recreated topic
    ]  # partition 3: nothing stored, Kafka's committed offset decides
    consumer = SeekingConsumer({0: 0, 1: 10, 2: 0, 3: 0}, {0: 50, 1: 50, 2: 50, 3: 50})

    async def connect() -> asyncpg.Connection:
        return PositionsConnection(stored)

    sink = Sink(SinkSettings(), consumer, FakeProducer(), connect)
    listener = sink.listener()
    assert not await sink._caught_up()  # not before the first assignment is placed
    await listener.on_partitions_revoked(set())
    await listener.on_partitions_assigned({TopicPartition(TOPIC, p) for p in range(4)})

    assert consumer.seeks == {TopicPartition(TOPIC, 0): 40, TopicPartition(TOPIC, 1): 10}
    gone = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(gone) == 1
    assert "messages 5..9 are gone" in gone[0]
    assert any("past the log's end 50" in r.getMessage() for r in caplog.records)

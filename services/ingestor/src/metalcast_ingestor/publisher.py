"""Validates fetched prices and publishes them: good ticks to ``prices.ticks.v1`` (key =
symbol), everything else to ``prices.ticks.dlq`` with its reason. Nothing is dropped."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from metalcast_core import (
    BARS,
    BARS_DLQ,
    MACRO,
    MACRO_DLQ,
    TICKS,
    TICKS_DLQ,
    DeadLetter,
    KafkaSettings,
    MacroObservation,
    PriceBar,
    PriceTick,
    Topic,
    bar_problem,
    macro_problem,
    tick_problem,
)
from metalcast_core import utcnow as _utcnow
from metalcast_ingestor.sources.base import Fetched, Rejected

log = logging.getLogger(__name__)

E = TypeVar("E", PriceBar, MacroObservation)


@dataclass
class PublishStats:
    published: int = 0
    dead_lettered: int = 0
    by_symbol: Counter[str] = field(default_factory=Counter)
    reasons: list[str] = field(default_factory=list)

    def add(self, other: PublishStats) -> None:
        self.published += other.published
        self.dead_lettered += other.dead_lettered
        self.by_symbol.update(other.by_symbol)
        self.reasons.extend(other.reasons[: max(0, 20 - len(self.reasons))])


def _dead_letter(source: str, reason: str, original: bytes) -> DeadLetter:
    return DeadLetter(stage="ingestor", source=source, reason=reason, original=original).within()


class _KeyedTopic:
    """One topic whose messages are keyed by symbol: Kafka's default partitioner on the key
    (all messages of a symbol in one partition, in order), several messages per request (the
    producer's per-message path is the bottleneck)."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self.name = topic
        self._partition_of: dict[str, int] = {}

    async def partition(self, symbol: str) -> int:
        if symbol not in self._partition_of:
            partitions = sorted(await self._producer.partitions_for(self.name))
            self._partition_of[symbol] = DefaultPartitioner()(
                symbol.encode(), partitions, partitions
            )
        return self._partition_of[symbol]

    async def send_batches(
        self, partition: int, messages: Iterable[tuple[bytes, bytes]]
    ) -> list[asyncio.Future[object]]:
        futures = []
        batch = self._producer.create_batch()
        for key, value in messages:
            if batch.append(key=key, value=value, timestamp=None) is None:
                futures.append(
                    await self._producer.send_batch(batch, self.name, partition=partition)
                )
                batch = self._producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        if batch.record_count():
            futures.append(await self._producer.send_batch(batch, self.name, partition=partition))
        return futures


class TickPublisher:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        kafka: KafkaSettings,
        known_symbols: Collection[str],
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._producer = producer
        self._ticks = _KeyedTopic(producer, kafka.topic_name(TICKS))
        self._dlq_topic = kafka.topic_name(TICKS_DLQ)
        self._known = frozenset(known_symbols)
        self._clock = clock

    async def publish(self, fetched: Iterable[Fetched]) -> PublishStats:
        """Publish a chunk and wait until Kafka has acknowledged all of it."""
        stats = PublishStats()
        now = self._clock()
        by_symbol: dict[str, list[PriceTick]] = defaultdict(list)
        dead: list[DeadLetter] = []
        for item in fetched:
            if isinstance(item, Rejected):
                dead.append(_dead_letter(item.source, item.reason, item.original))
                continue
            problem = tick_problem(item, self._known, now)
            if problem is not None:
                dead.append(_dead_letter(item.source, problem, TICKS.encode(item)))
                continue
            by_symbol[item.symbol].append(item)

        futures: list[asyncio.Future[object]] = []
        by_partition: dict[int, list[PriceTick]] = defaultdict(list)
        for symbol, ticks in by_symbol.items():
            by_partition[await self._ticks.partition(symbol)].extend(ticks)
            stats.by_symbol[symbol] += len(ticks)
        for partition, ticks in by_partition.items():
            futures.extend(
                await self._ticks.send_batches(
                    partition, ((t.symbol.encode(), TICKS.encode(t)) for t in ticks)
                )
            )
        for letter in dead:
            futures.append(
                await self._producer.send(
                    self._dlq_topic, TICKS_DLQ.encode(letter), key=letter.source.encode()
                )
            )
        await asyncio.gather(*futures)
        stats.published = sum(stats.by_symbol.values())
        stats.dead_lettered = len(dead)
        stats.reasons = [d.reason for d in dead[:20]]
        for d in dead[:5]:
            log.warning("dead-lettered from %s: %s", d.source, d.reason)
        return stats


class _RecordPublisher(Generic[E]):
    """Records of one kind checked, then published: good ones to ``topic`` (keyed by
    ``key``), the rest to ``dlq`` with the reason. Several messages per request."""

    what = "record"

    def __init__(
        self,
        producer: AIOKafkaProducer,
        kafka: KafkaSettings,
        topic: Topic[E],
        dlq: Topic[DeadLetter],
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._producer = producer
        self._codec: Topic[E] = topic
        self._records = _KeyedTopic(producer, kafka.topic_name(topic))
        self._dlq = dlq
        self._dlq_topic = kafka.topic_name(dlq)
        self._clock = clock

    def key(self, item: E) -> str:
        raise NotImplementedError

    def problem(self, item: E, now: datetime) -> str | None:
        raise NotImplementedError

    async def publish(self, fetched: Iterable[E | Rejected]) -> PublishStats:
        stats = PublishStats()
        now = self._clock()
        good: list[E] = []
        dead: list[DeadLetter] = []
        for item in fetched:
            if isinstance(item, Rejected):
                dead.append(_dead_letter(item.source, item.reason, item.original))
                continue
            problem = self.problem(item, now)
            if problem is not None:
                source = str(getattr(item, "source", "unknown"))
                dead.append(_dead_letter(source, problem, self._codec.encode(item)))
                continue
            good.append(item)
            stats.by_symbol[self.key(item)] += 1
        futures: list[asyncio.Future[object]] = []
        by_partition: dict[int, list[E]] = defaultdict(list)
        for record in good:
            by_partition[await self._records.partition(self.key(record))].append(record)
        for partition, records in by_partition.items():
            futures.extend(
                await self._records.send_batches(
                    partition, ((self.key(r).encode(), self._codec.encode(r)) for r in records)
                )
            )
        for letter in dead:
            futures.append(
                await self._producer.send(
                    self._dlq_topic, self._dlq.encode(letter), key=letter.source.encode()
                )
            )
        await asyncio.gather(*futures)
        stats.published = len(good)
        stats.dead_lettered = len(dead)
        stats.reasons = [d.reason for d in dead[:20]]
        for d in dead[:5]:
            log.warning("%s dead-lettered from %s: %s", self.what, d.source, d.reason)
        return stats


class BarPublisher(_RecordPublisher[PriceBar]):
    """Daily bars: good ones to ``prices.bars.v1`` (key = symbol), the rest to
    ``prices.bars.dlq`` with the reason."""

    what = "bar"

    def __init__(
        self,
        producer: AIOKafkaProducer,
        kafka: KafkaSettings,
        known_symbols: Collection[str],
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__(producer, kafka, BARS, BARS_DLQ, clock)
        self._known = known_symbols

    def key(self, item: PriceBar) -> str:
        return item.symbol

    def problem(self, item: PriceBar, now: datetime) -> str | None:
        return bar_problem(item, self._known, now)


class MacroPublisher(_RecordPublisher[MacroObservation]):
    """Macro observations: to ``macro.observations.v1`` (key = series id), the refused rows
    to ``macro.observations.dlq`` with the reason. ``series``: the series accepted (the
    rows of ``macro.series``); ``None`` accepts any (the sink checks them again)."""

    what = "macro observation"

    def __init__(
        self,
        producer: AIOKafkaProducer,
        kafka: KafkaSettings,
        series: Collection[str] | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__(producer, kafka, MACRO, MACRO_DLQ, clock)
        self._series = series

    def key(self, item: MacroObservation) -> str:
        return item.series_id

    def problem(self, item: MacroObservation, now: datetime) -> str | None:
        return macro_problem(item, self._series, now)

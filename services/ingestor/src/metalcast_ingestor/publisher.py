"""Validates fetched prices and publishes them: good ticks to ``prices.ticks.v1`` (key =
symbol), everything else to ``prices.ticks.dlq`` with its reason. Nothing is dropped."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from metalcast_core import (
    BARS,
    BARS_DLQ,
    TICKS,
    TICKS_DLQ,
    DeadLetter,
    KafkaSettings,
    PriceBar,
    PriceTick,
    bar_problem,
    tick_problem,
)
from metalcast_core import utcnow as _utcnow
from metalcast_ingestor.sources.base import Fetched, Rejected

log = logging.getLogger(__name__)


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


class BarPublisher:
    """Daily bars: good ones to ``prices.bars.v1`` (key = symbol), the rest to
    ``prices.bars.dlq`` with the reason. Several messages per request."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        kafka: KafkaSettings,
        known_symbols: Collection[str],
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._producer = producer
        self._bars = _KeyedTopic(producer, kafka.topic_name(BARS))
        self._dlq_topic = kafka.topic_name(BARS_DLQ)
        self._known = known_symbols
        self._clock = clock

    async def publish(self, fetched: Iterable[PriceBar | Rejected]) -> PublishStats:
        stats = PublishStats()
        now = self._clock()
        good: list[PriceBar] = []
        dead: list[DeadLetter] = []
        for item in fetched:
            if isinstance(item, Rejected):
                dead.append(_dead_letter(item.source, item.reason, item.original))
                continue
            problem = bar_problem(item, self._known, now)
            if problem is not None:
                dead.append(_dead_letter(item.source, problem, BARS.encode(item)))
                continue
            good.append(item)
            stats.by_symbol[item.symbol] += 1
        futures: list[asyncio.Future[object]] = []
        by_partition: dict[int, list[PriceBar]] = defaultdict(list)
        for bar in good:
            by_partition[await self._bars.partition(bar.symbol)].append(bar)
        for partition, bars in by_partition.items():
            futures.extend(
                await self._bars.send_batches(
                    partition, ((b.symbol.encode(), BARS.encode(b)) for b in bars)
                )
            )
        for letter in dead:
            futures.append(
                await self._producer.send(
                    self._dlq_topic, BARS_DLQ.encode(letter), key=letter.source.encode()
                )
            )
        await asyncio.gather(*futures)
        stats.published = len(good)
        stats.dead_lettered = len(dead)
        stats.reasons = [d.reason for d in dead[:20]]
        for d in dead[:5]:
            log.warning("bar dead-lettered from %s: %s", d.source, d.reason)
        return stats

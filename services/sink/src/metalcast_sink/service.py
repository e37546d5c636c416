"""The sink's consume → write → commit → publish loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from metalcast_core import (
    BATCH_LOADED,
    TICKS,
    TICKS_DLQ,
    BatchLoaded,
    DeadLetter,
    DecodeError,
    PriceTick,
    tick_problem,
    utcnow,
)
from metalcast_sink.config import SinkSettings
from metalcast_sink.writer import find_refused, mark_published, unpublished_batches, write_batch

log = logging.getLogger(__name__)

# Errors that mean "the database is not reachable right now": wait and retry the batch.
DB_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.InternalClientError,
)

Connect = Callable[[], Awaitable[asyncpg.Connection]]
T = TypeVar("T")

# Errors that mean a tick's values are refused by the database: isolate and dead-letter it.
DATA_REJECTED: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
)


@dataclass(frozen=True)
class Decoded:
    """A batch ready to store: valid ticks, dead letters, the offsets to commit after it."""

    ticks: list[PriceTick]
    dead: list[DeadLetter]
    offsets: dict[TopicPartition, int]
    received: int


@dataclass
class SinkStats:
    batches: int = 0
    ticks_received: int = 0
    rows_inserted: int = 0
    dead_lettered: int = 0
    db_retries: int = 0
    write_s: float = 0.0  # time spent writing batches to PostgreSQL


class Sink:
    def __init__(
        self,
        settings: SinkSettings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        connect: Connect,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._producer = producer
        self._connect = connect
        self._conn: asyncpg.Connection | None = None
        self._known = frozenset(settings.known_symbols)
        self._ticks_topic = settings.kafka.topic_name(TICKS)
        self._dlq_topic = settings.kafka.topic_name(TICKS_DLQ)
        self._loaded_topic = settings.kafka.topic_name(BATCH_LOADED)
        self.stats = SinkStats()

    async def run(self, stop: asyncio.Event | None = None, until_idle: bool = False) -> SinkStats:
        """Consume until ``stop`` is set or, with ``until_idle``, until caught up."""
        stop = stop or asyncio.Event()
        try:
            await self._with_db(self._publish_outbox)
            # Two stages: while one batch is written, the next is fetched and decoded, so
            # PostgreSQL's work and ours overlap. One batch at most waits in between.
            decoded: asyncio.Queue[Decoded | None] = asyncio.Queue(maxsize=1)
            reader = asyncio.create_task(self._read(decoded, stop, until_idle))
            try:
                while (batch := await decoded.get()) is not None:
                    await self.store(batch)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        finally:
            if self._conn is not None:
                await self._conn.close()
        return self.stats

    async def _read(
        self, out: asyncio.Queue[Decoded | None], stop: asyncio.Event, until_idle: bool
    ) -> None:
        try:
            while not stop.is_set():
                fetched = await self._consumer.getmany(
                    timeout_ms=self._settings.sink.batch_timeout_ms,
                    max_records=self._settings.sink.max_batch,
                )
                records = [r for batch in fetched.values() for r in batch]
                if records:
                    await out.put(self.decode(records))
                elif until_idle and await self._caught_up():
                    break
        finally:
            await out.put(None)

    async def handle(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Decode, store and commit one batch."""
        await self.store(self.decode(records))

    def decode(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> Decoded:
        ticks, dead = self._decode(records)
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        return Decoded(ticks, dead, offsets, len(records))

    async def store(self, batch: Decoded) -> None:
        """Write a decoded batch, dead-letter what failed, commit its offsets, then publish."""
        ticks, dead = batch.ticks, list(batch.dead)
        started = time.perf_counter()
        try:
            event = await self._with_db(lambda conn: write_batch(conn, ticks, len(dead)))
        except DATA_REJECTED as exc:
            log.warning("batch refused by the database (%s); isolating the bad ticks", exc)
            refused = await self._with_db(lambda conn: find_refused(conn, ticks))
            bad = {id(t) for t, _ in refused}
            ticks = [t for t in ticks if id(t) not in bad]
            dead.extend(self._dead_letter_refused(refused))
            event = await self._with_db(lambda conn: write_batch(conn, ticks, len(dead)))
        self.stats.write_s += time.perf_counter() - started
        if dead:
            # Dead letters are durable before the offsets move past them.
            sends = [
                await self._producer.send(self._dlq_topic, TICKS_DLQ.encode(d), key=b"sink")
                for d in dead
            ]
            await asyncio.gather(*sends)
        try:
            # Exactly this batch's offsets: the consumer's position may already be past a
            # batch that is decoded but not yet written.
            await self._consumer.commit(batch.offsets)
        except CommitFailedError:
            # Rebalanced mid-batch: another member re-reads these messages; the writes are
            # idempotent, so that is harmless.
            log.warning("offset commit failed after a rebalance; batch will be re-read")
        if event is not None:
            await self._with_db(lambda conn: self._publish(conn, event))
        self.stats.batches += 1
        self.stats.ticks_received += batch.received
        self.stats.rows_inserted += event.rows_inserted if event else 0
        self.stats.dead_lettered += len(dead)

    def _decode(
        self, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> tuple[list[PriceTick], list[DeadLetter]]:
        ticks: list[PriceTick] = []
        dead: list[DeadLetter] = []
        now = utcnow()
        for record in records:
            try:
                tick = TICKS.decode(record.value)
                problem = tick_problem(tick, self._known, now)
            except DecodeError as exc:
                problem = str(exc)
            if problem is None:
                ticks.append(tick)
                continue
            dead.append(
                DeadLetter(
                    stage="sink",
                    source=record.topic,
                    reason=problem,
                    original=record.value or b"",
                    original_topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                )
            )
        if dead:
            log.warning("%d message(s) dead-lettered, e.g. %s", len(dead), dead[0].reason)
        return ticks, dead

    def _dead_letter_refused(self, refused: list[tuple[PriceTick, str]]) -> list[DeadLetter]:
        return [
            DeadLetter(
                stage="sink",
                source=self._ticks_topic,
                reason=f"refused by the database: {reason}",
                original=TICKS.encode(tick),
                original_topic=self._ticks_topic,
            )
            for tick, reason in refused
        ]

    async def _publish(self, conn: asyncpg.Connection, event: BatchLoaded) -> None:
        await self._producer.send_and_wait(
            self._loaded_topic, BATCH_LOADED.encode(event), key=str(event.batch_id).encode()
        )
        await mark_published(conn, event)

    async def _publish_outbox(self, conn: asyncpg.Connection) -> None:
        for event in await unpublished_batches(conn):
            log.info("publishing batch %s left in the outbox", event.batch_id)
            await self._publish(conn, event)

    async def _with_db(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``work`` on the connection, reconnecting and retrying while the DB is down."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(DB_UNAVAILABLE),
            wait=wait_exponential_jitter(
                multiplier=self._settings.sink.db_retry_initial_s,
                max=self._settings.sink.db_retry_max_s,
            ),
            before_sleep=self._on_db_error,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await self._connect()
                return await work(self._conn)
        raise AssertionError("unreachable")

    async def _on_db_error(self, state: object) -> None:
        self.stats.db_retries += 1
        log.warning("database unavailable, retrying the batch: %s", getattr(state, "outcome", ""))
        if self._conn is not None and not self._conn.is_closed():
            self._conn.terminate()
        self._conn = None

    async def _caught_up(self) -> bool:
        assignment = self._consumer.assignment()
        if not assignment:
            return False
        ends = await self._consumer.end_offsets(list(assignment))
        for tp in assignment:
            if await self._consumer.position(tp) < ends[tp]:
                return False
        return True

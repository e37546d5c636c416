"""The loop a table fed from one topic runs (daily bars, macro observations): consume a
batch, decode and check each record, write the good ones with the batch's outbox row and the
consumer's positions in one transaction, then dead-letter the rest, commit the offsets and
publish the batch-loaded event. Offsets move only after the database commit.

A table is a :class:`TableLoad`: its topic, dead-letter topic, the checks on one record and
the write of a batch (which records the batch in ``pipeline.batches`` and returns its
:class:`~metalcast_core.BatchLoaded`, or ``None`` when nothing was new).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, Generic, Literal, TypeVar

import asyncpg
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)

from metalcast_core import (
    BATCH_LOADED,
    BatchLoaded,
    DeadLetter,
    DecodeError,
    Event,
    Topic,
)
from metalcast_sink.config import SinkSettings
from metalcast_sink.consuming import (
    Connect,
    Record,
    RetryingConnection,
    caught_up,
    commit_owned,
    dead_letter,
    seek_to_stored,
)
from metalcast_sink.writer import load_positions, mark_published, outbox_args, save_positions

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
LoadedTable = Literal["prices.bars", "macro.observations"]


@dataclass
class LoadStats:
    batches: int = 0
    received: int = 0
    rows_written: int = 0  # new rows and rows whose values changed
    dead_lettered: int = 0
    reasons: list[str] = field(default_factory=list)  # the first few dead letters' reasons


@dataclass(frozen=True)
class DecodedBatch(Generic[E]):
    items: list[E]
    dead: list[DeadLetter]
    offsets: dict[TopicPartition, int]
    received: int


class TableLoad(ABC, Generic[E]):
    """What one table's loop needs to know besides the clients."""

    topic: Topic[E]
    dlq: Topic[DeadLetter]
    consumer: str  # its rows in pipeline.consumer_positions
    what: str = "record"

    async def refresh(self, conn: asyncpg.Connection) -> None:
        """Before each batch is decoded: re-read what the checks use (default: nothing)."""

    @abstractmethod
    def problem(self, item: E) -> str | None:
        """Why ``item`` must not be stored (a dead letter's reason), or ``None``."""

    @abstractmethod
    async def write(
        self, conn: asyncpg.Connection, items: Sequence[E], received: int, dead_lettered: int
    ) -> BatchLoaded | None:
        """Store ``items`` and record the batch (inside the caller's transaction)."""


class TableSink(Generic[E]):
    def __init__(
        self,
        settings: SinkSettings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        connect: Connect,
        table: TableLoad[E],
        prepare: Callable[[asyncpg.Connection], Awaitable[object]] | None = None,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._producer = producer
        self._table = table
        self._prepare = prepare
        cfg = settings.sink
        self._connect = connect
        self._db = RetryingConnection(connect, cfg.db_retry_initial_s, cfg.db_retry_max_s)
        self._dlq_topic = settings.kafka.topic_name(table.dlq)
        self._loaded_topic = settings.kafka.topic_name(BATCH_LOADED)
        self.stats = LoadStats()
        # Clear while a rebalance is under way (with :meth:`listener`): nothing is fetched
        # and "caught up" is not decided until each partition is at its stored position.
        self._settled = asyncio.Event()
        self._settled.set()

    async def run(self, stop: asyncio.Event | None = None, until_idle: bool = False) -> LoadStats:
        stop = stop or asyncio.Event()
        cfg = self._settings.sink
        try:
            if self._prepare is not None:
                await self._db.run(self._prepare)
            while not stop.is_set():
                if not self._settled.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._settled.wait(), cfg.batch_timeout_ms / 1000)
                    continue
                fetched = await self._consumer.getmany(
                    timeout_ms=cfg.batch_timeout_ms, max_records=cfg.max_batch
                )
                if not any(fetched.values()):
                    if until_idle and await self._caught_up():
                        break
                    continue
                await self._db.run(self._table.refresh)
                await self.store(self.decode(fetched))
        finally:
            await self._db.close()
        return self.stats

    def decode(self, fetched: Mapping[TopicPartition, Sequence[Record]]) -> DecodedBatch[E]:
        records = list(itertools.chain.from_iterable(fetched.values()))
        offsets = {tp: batch[-1].offset + 1 for tp, batch in fetched.items() if batch}
        items: list[E] = []
        dead: list[DeadLetter] = []
        for record in records:
            try:
                item = self._table.topic.decode(record.value)
            except DecodeError as exc:
                dead.append(dead_letter(record, str(exc)))
                continue
            problem = self._table.problem(item)
            if problem is not None:
                dead.append(dead_letter(record, problem))
                continue
            items.append(item)
        return DecodedBatch(items, dead, offsets, len(records))

    async def store(self, batch: DecodedBatch[E]) -> None:
        positions = {(tp.topic, tp.partition): offset for tp, offset in batch.offsets.items()}

        async def write(conn: asyncpg.Connection) -> BatchLoaded | None:
            async with conn.transaction():
                event = await self._table.write(conn, batch.items, batch.received, len(batch.dead))
                await save_positions(conn, positions, self._table.consumer)
            return event

        event = await self._db.run(write)
        if batch.dead:
            log.warning(
                "%d %s(s) dead-lettered, e.g. %s",
                len(batch.dead),
                self._table.what,
                batch.dead[0].reason,
            )
            sends = [
                await self._producer.send(self._dlq_topic, self._table.dlq.encode(d), key=b"sink")
                for d in batch.dead
            ]
            await asyncio.gather(*sends)
        await commit_owned(self._consumer, batch.offsets)
        if event is not None:
            await self._producer.send_and_wait(
                self._loaded_topic, BATCH_LOADED.encode(event), key=str(event.batch_id).encode()
            )
            await self._db.run(lambda conn: mark_published(conn, event.batch_id))
        self.stats.batches += 1
        self.stats.received += batch.received
        self.stats.rows_written += event.rows_inserted if event else 0
        self.stats.dead_lettered += len(batch.dead)
        room = max(0, 20 - len(self.stats.reasons))
        self.stats.reasons += [d.reason for d in batch.dead[:room]]

    async def _caught_up(self) -> bool:
        return self._settled.is_set() and await caught_up(self._consumer)

    def listener(self) -> ConsumerRebalanceListener:
        """Subscribe with this: each assigned partition resumes from the position stored with
        the rows (``pipeline.consumer_positions``), as the tick loop does; a restored
        database re-reads what was published after its backup."""
        self._settled.clear()  # until the first assignment is settled
        return _ResumeFromDatabase(self)

    def rebalancing(self) -> None:
        self._settled.clear()

    async def resume(self, assigned: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        """Seek each of ``assigned`` to its stored position (its own connection: a batch may
        be in the writer's hands); fetching goes on when this returns."""
        try:
            if not assigned:
                return {}
            topics = sorted({tp.topic for tp in assigned})

            async def load() -> dict[tuple[str, int], int]:
                async for attempt in self._db.retrying():
                    with attempt:
                        conn = await self._connect()
                        try:
                            return await load_positions(conn, topics, self._table.consumer)
                        finally:
                            await conn.close()
                raise AssertionError("unreachable")

            return await seek_to_stored(self._consumer, assigned, await load())
        finally:
            self._settled.set()


class _ResumeFromDatabase(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: TableSink[Any]) -> None:
        self._sink = sink

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # A batch in hand stores its positions with its rows, or is re-read.
        self._sink.rebalancing()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._sink.resume(assigned)


_RECORD_BATCH = """
INSERT INTO pipeline.batches
    (batch_id, loaded_at, symbols, first_hour, last_hour, ticks_received, rows_inserted,
     duplicates, dead_lettered, event, target)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11)
"""


def _day_start(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time(0), tzinfo=UTC)


async def record_daily_batch(
    conn: asyncpg.Connection,
    written: asyncpg.Record | None,
    received: int,
    dead_lettered: int,
    table: LoadedTable,
) -> BatchLoaded | None:
    """The event of a batch of daily rows, recorded in ``pipeline.batches`` (its outbox row,
    target = ``table``); ``None`` when nothing was written. ``written``: the write's summary
    (``written`` rows, their ``symbols``, ``first_day`` and ``last_day``, at 00:00 UTC in the
    event)."""
    if written is None or written["written"] == 0:
        return None
    event = BatchLoaded(
        symbols=sorted(written["symbols"]),
        first_hour=_day_start(written["first_day"]),
        last_hour=_day_start(written["last_day"]),
        rows_inserted=written["written"],
        ticks_received=received,
        duplicates=received - dead_lettered - written["written"],
        dead_lettered=dead_lettered,
        table=table,
    )
    await conn.execute(_RECORD_BATCH, *outbox_args(event), event.table)
    return event

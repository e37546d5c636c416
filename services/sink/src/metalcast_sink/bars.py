"""The daily-bar loop: ``prices.bars.v1`` → ``prices.bars`` → ``pipeline.batch-loaded.v1``.

Per batch: decode each value with the :class:`~metalcast_core.PriceBar` contract and the bar
checks (known instrument, a day not in the future, a consistent bar); write the good ones in
one transaction (``ON CONFLICT (symbol, date, source)``: a replay stores nothing, a bar the
provider corrected is updated) together with the batch's outbox row; then send the dead
letters to ``prices.bars.dlq``, commit the offsets, and publish the batch-loaded event
(``table = "prices.bars"``). Offsets move only after the database commit.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, TypeAlias, TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from metalcast_core import (
    BARS,
    BARS_DLQ,
    BATCH_LOADED,
    BatchLoaded,
    DeadLetter,
    DecodeError,
    PriceBar,
    bar_problem,
    utcnow,
)
from metalcast_sink.config import SinkSettings
from metalcast_sink.consuming import commit_owned, dead_letter
from metalcast_sink.service import DB_UNAVAILABLE, RETRY_BATCH, Connect
from metalcast_sink.writer import mark_published

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
T = TypeVar("T")

BAR_COLUMNS = (
    "symbol",
    "source",
    "date",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "currency",
    "fetched_at",
    "raw",
)

_WRITE_BARS = """
WITH data AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::date[], $4::float8[], $5::float8[], $6::float8[],
        $7::float8[], $8::float8[], $9::text[], $10::timestamptz[], $11::text[]
    ) AS d(symbol, source, date, open, high, low, close, volume, currency, fetched_at, raw)
),
written AS (
    INSERT INTO prices.bars AS b
        (symbol, source, date, open, high, low, close, volume, currency, fetched_at, raw)
    SELECT symbol, source, date, open::text::numeric, high::text::numeric,
           low::text::numeric, close::text::numeric, volume::text::numeric, currency,
           fetched_at, raw::jsonb
    FROM data
    ON CONFLICT ON CONSTRAINT bars_natural_key DO UPDATE SET
        open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
        close = EXCLUDED.close, volume = EXCLUDED.volume, currency = EXCLUDED.currency,
        fetched_at = EXCLUDED.fetched_at, raw = EXCLUDED.raw, loaded_at = now()
    WHERE (b.open, b.high, b.low, b.close, b.volume, b.currency)
          IS DISTINCT FROM
          (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume,
           EXCLUDED.currency)
    RETURNING symbol, date
)
SELECT count(*)::int AS written,
       coalesce(array_agg(DISTINCT symbol), '{}') AS symbols,
       min(date) AS first_day,
       max(date) AS last_day
FROM written
"""

_RECORD_BATCH = """
INSERT INTO pipeline.batches
    (batch_id, loaded_at, symbols, first_hour, last_hour, ticks_received, rows_inserted,
     duplicates, dead_lettered, event, target)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, 'prices.bars')
"""


def _day_start(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time(0), tzinfo=UTC)


def latest_per_key(bars: Sequence[PriceBar]) -> list[PriceBar]:
    """One bar per (symbol, date, source): the last one in the batch (a later fetch)."""
    keyed: dict[tuple[str, date, str], PriceBar] = {}
    for bar in bars:
        keyed[(bar.symbol, bar.date, bar.source)] = bar
    return list(keyed.values())


async def write_bars(
    conn: asyncpg.Connection, bars: Sequence[PriceBar], received: int, dead_lettered: int
) -> BatchLoaded | None:
    """Store ``bars`` and record the batch in the outbox, in one transaction; the event, or
    ``None`` when nothing was new or changed."""
    bars = latest_per_key(bars)
    if not bars:
        return None
    columns: dict[str, list[Any]] = {name: [] for name in BAR_COLUMNS}
    for bar in bars:
        for name in BAR_COLUMNS:
            value = getattr(bar, name)
            if name == "raw":
                value = None if value is None else json.dumps(value)
            columns[name].append(value)
    async with conn.transaction():
        row = await conn.fetchrow(_WRITE_BARS, *(columns[n] for n in BAR_COLUMNS))
        assert row is not None
        if row["written"] == 0:
            return None
        event = BatchLoaded(
            symbols=sorted(row["symbols"]),
            first_hour=_day_start(row["first_day"]),
            last_hour=_day_start(row["last_day"]),
            rows_inserted=row["written"],
            ticks_received=received,
            duplicates=received - dead_lettered - row["written"],
            dead_lettered=dead_lettered,
            table="prices.bars",
        )
        await conn.execute(
            _RECORD_BATCH,
            event.batch_id,
            event.loaded_at,
            event.symbols,
            event.first_hour,
            event.last_hour,
            event.ticks_received,
            event.rows_inserted,
            event.duplicates,
            event.dead_lettered,
            event.model_dump_json(),
        )
    return event


@dataclass
class BarSinkStats:
    batches: int = 0
    bars_received: int = 0
    rows_written: int = 0  # new bars and bars whose values changed
    dead_lettered: int = 0
    reasons: list[str] = field(default_factory=list)  # the first few dead letters' reasons


@dataclass(frozen=True)
class DecodedBars:
    bars: list[PriceBar]
    dead: list[DeadLetter]
    offsets: dict[TopicPartition, int]
    received: int


class BarSink:
    def __init__(
        self,
        settings: SinkSettings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        connect: Connect,
        known: Collection[str],
        prepare: Callable[[asyncpg.Connection], Awaitable[object]] | None = None,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._producer = producer
        self._connect = connect
        self._known = known
        self._prepare = prepare
        self._conn: asyncpg.Connection | None = None
        self._dlq_topic = settings.kafka.topic_name(BARS_DLQ)
        self._loaded_topic = settings.kafka.topic_name(BATCH_LOADED)
        self.stats = BarSinkStats()

    async def run(
        self, stop: asyncio.Event | None = None, until_idle: bool = False
    ) -> BarSinkStats:
        stop = stop or asyncio.Event()
        cfg = self._settings.sink
        try:
            if self._prepare is not None:
                await self._with_db(self._prepare)
            while not stop.is_set():
                fetched = await self._consumer.getmany(
                    timeout_ms=cfg.batch_timeout_ms, max_records=cfg.max_batch
                )
                if not any(fetched.values()):
                    if until_idle and await self._caught_up():
                        break
                    continue
                await self.store(self.decode(fetched))
        finally:
            if self._conn is not None:
                await self._conn.close()
        return self.stats

    def decode(self, fetched: Mapping[TopicPartition, Sequence[Record]]) -> DecodedBars:
        records = list(itertools.chain.from_iterable(fetched.values()))
        offsets = {tp: batch[-1].offset + 1 for tp, batch in fetched.items() if batch}
        now = utcnow()
        bars: list[PriceBar] = []
        dead: list[DeadLetter] = []
        for record in records:
            try:
                bar = BARS.decode(record.value)
            except DecodeError as exc:
                dead.append(dead_letter(record, str(exc)))
                continue
            problem = bar_problem(bar, self._known, now)
            if problem is not None:
                dead.append(dead_letter(record, problem))
                continue
            bars.append(bar)
        return DecodedBars(bars, dead, offsets, len(records))

    async def store(self, batch: DecodedBars) -> None:
        event = await self._with_db(
            lambda conn: write_bars(conn, batch.bars, batch.received, len(batch.dead))
        )
        if batch.dead:
            log.warning("%d bar(s) dead-lettered, e.g. %s", len(batch.dead), batch.dead[0].reason)
            sends = [
                await self._producer.send(self._dlq_topic, BARS_DLQ.encode(d), key=b"sink")
                for d in batch.dead
            ]
            await asyncio.gather(*sends)
        await commit_owned(self._consumer, batch.offsets)
        if event is not None:
            await self._producer.send_and_wait(
                self._loaded_topic, BATCH_LOADED.encode(event), key=str(event.batch_id).encode()
            )
            await self._with_db(lambda conn: mark_published(conn, event.batch_id))
        self.stats.batches += 1
        self.stats.bars_received += batch.received
        self.stats.rows_written += event.rows_inserted if event else 0
        self.stats.dead_lettered += len(batch.dead)
        room = max(0, 20 - len(self.stats.reasons))
        self.stats.reasons += [d.reason for d in batch.dead[:room]]

    async def _with_db(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((*DB_UNAVAILABLE, *RETRY_BATCH)),
            wait=wait_exponential_jitter(
                multiplier=self._settings.sink.db_retry_initial_s,
                max=self._settings.sink.db_retry_max_s,
            ),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await self._connect()
                try:
                    return await work(self._conn)
                except DB_UNAVAILABLE:
                    if self._conn is not None and not self._conn.is_closed():
                        self._conn.terminate()
                    self._conn = None
                    raise
        raise AssertionError("unreachable")

    async def _caught_up(self) -> bool:
        assignment = self._consumer.assignment()
        if not assignment:
            return False
        ends = await self._consumer.end_offsets(list(assignment))
        for tp in assignment:
            if await self._consumer.position(tp) < ends[tp]:
                return False
        return True

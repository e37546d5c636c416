"""The daily-bar loop: ``prices.bars.v1`` → ``prices.bars`` → ``pipeline.batch-loaded.v1``.

Per batch (the loop of :mod:`metalcast_sink.loading`): decode each value with the
:class:`~metalcast_core.PriceBar` contract and the bar checks (known instrument, a day not in
the future, a consistent bar); write the good ones in one transaction (``ON CONFLICT (symbol,
date, source)``: a replay stores nothing, a bar the provider corrected is updated) together
with the batch's outbox row and the consumer's positions; then send the dead letters to
``prices.bars.dlq``, commit the offsets, and publish the batch-loaded event (``table =
"prices.bars"``). Offsets move only after the database commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import date
from typing import Any, TypeAlias, TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from metalcast_core import (
    BARS,
    BARS_DLQ,
    BatchLoaded,
    PriceBar,
    bar_problem,
    utcnow,
)
from metalcast_sink.config import SinkSettings
from metalcast_sink.consuming import Connect
from metalcast_sink.loading import TableLoad, TableSink, record_daily_batch

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
        return await record_daily_batch(conn, row, received, dead_lettered, "prices.bars")


class BarTable(TableLoad[PriceBar]):
    """``prices.bars.v1`` into ``prices.bars``: bars of catalogued instruments that pass the
    bar checks (a day not in the future, a consistent bar)."""

    topic = BARS
    dlq = BARS_DLQ
    consumer = "sink-bars"
    what = "bar"

    def __init__(self, known: Collection[str]) -> None:
        self._known = known

    def problem(self, item: PriceBar) -> str | None:
        return bar_problem(item, self._known, utcnow())

    async def write(
        self, conn: asyncpg.Connection, items: Sequence[PriceBar], received: int, dead_lettered: int
    ) -> BatchLoaded | None:
        return await write_bars(conn, items, received, dead_lettered)


def bar_sink(
    settings: SinkSettings,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    connect: Connect,
    known: Collection[str],
    prepare: Callable[[asyncpg.Connection], Awaitable[object]] | None = None,
) -> TableSink[PriceBar]:
    """The daily-bar loop (``metalcast sink bars``)."""
    return TableSink(settings, consumer, producer, connect, BarTable(known), prepare)

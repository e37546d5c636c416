"""The macro loop: ``macro.observations.v1`` → ``macro.observations`` →
``pipeline.batch-loaded.v1`` (``metalcast sink macro``; the loop of
:mod:`metalcast_sink.loading`).

Each observation is one vintage of one value, keyed by ``(series_id, date,
realtime_start)``. A new vintage is inserted; a vintage already stored is left as it was,
except its ``realtime_end``, which moves earlier when FRED closes it (a revised value arrives
as the next vintage) and never back (an old fetch replayed does not reopen a vintage). So a
replay stores nothing, and a revision adds a row and never overwrites what was known before.
An observation of a series not in ``macro.series`` (or one that
:func:`~metalcast_core.macro_problem` refuses) goes to ``macro.observations.dlq`` with the
reason. The batch-loaded event has ``table = "macro.observations"``, the series ids as its
symbols and the first and last observation dates (00:00 UTC) as its hours.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from metalcast_core import (
    MACRO,
    MACRO_DLQ,
    BatchLoaded,
    MacroObservation,
    macro_problem,
    utcnow,
)
from metalcast_sink.config import SinkSettings
from metalcast_sink.consuming import Connect
from metalcast_sink.loading import TableLoad, TableSink, record_daily_batch

_WRITE = """
WITH data AS (
    SELECT DISTINCT ON (series_id, date, realtime_start) *
    FROM unnest(
        $1::text[], $2::date[], $3::date[], $4::date[], $5::text[], $6::text[],
        $7::timestamptz[]
    ) AS d(series_id, date, realtime_start, realtime_end, value, source, fetched_at)
    ORDER BY series_id, date, realtime_start, realtime_end
),
written AS (
    INSERT INTO macro.observations AS o
        (series_id, date, realtime_start, realtime_end, value, source, fetched_at)
    SELECT series_id, date, realtime_start, realtime_end, value::numeric, source, fetched_at
    FROM data
    ON CONFLICT ON CONSTRAINT macro_observations_natural_key DO UPDATE SET
        realtime_end = EXCLUDED.realtime_end, loaded_at = now()
    WHERE EXCLUDED.realtime_end < o.realtime_end
    RETURNING series_id, date
)
SELECT count(*)::int AS written,
       coalesce(array_agg(DISTINCT series_id), '{}') AS symbols,
       min(date) AS first_day,
       max(date) AS last_day
FROM written
"""


async def load_series(conn: asyncpg.Connection) -> set[str]:
    """The series ids of ``macro.series``: the only ones stored."""
    return {r["series_id"] for r in await conn.fetch("SELECT series_id FROM macro.series")}


async def write_observations(
    conn: asyncpg.Connection,
    observations: Sequence[MacroObservation],
    received: int,
    dead_lettered: int,
) -> BatchLoaded | None:
    """Store new vintages (and moved ``realtime_end``s) with the batch's outbox row, in one
    transaction; the event, or ``None`` when nothing was new."""
    if not observations:
        return None
    columns: list[list[Any]] = [[] for _ in range(7)]
    for o in observations:
        row = (
            o.series_id,
            o.date,
            o.realtime_start,
            o.realtime_end,
            None if o.value is None else repr(o.value),
            o.source,
            o.fetched_at,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    async with conn.transaction():
        written = await conn.fetchrow(_WRITE, *columns)
        return await record_daily_batch(
            conn, written, received, dead_lettered, "macro.observations"
        )


class MacroTable(TableLoad[MacroObservation]):
    """``macro.observations.v1`` into ``macro.observations``; ``series``: the rows of
    ``macro.series``, read again before each batch (a series added there is accepted from the
    next batch on, without a restart)."""

    topic = MACRO
    dlq = MACRO_DLQ
    consumer = "sink-macro"
    what = "macro observation"

    def __init__(self, series: Collection[str] = ()) -> None:
        self.series = frozenset(series)

    async def refresh(self, conn: asyncpg.Connection) -> None:
        self.series = frozenset(await load_series(conn))

    def problem(self, item: MacroObservation) -> str | None:
        return macro_problem(item, self.series, utcnow())

    async def write(
        self,
        conn: asyncpg.Connection,
        items: Sequence[MacroObservation],
        received: int,
        dead_lettered: int,
    ) -> BatchLoaded | None:
        return await write_observations(conn, items, received, dead_lettered)


def macro_sink(
    settings: SinkSettings,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    connect: Connect,
) -> TableSink[MacroObservation]:
    """The macro loop (``metalcast sink macro``)."""
    return TableSink(settings, consumer, producer, connect, MacroTable())

"""Writes a batch of ticks to PostgreSQL in one transaction.

1. COPY the ticks into a temporary staging table (binary COPY, float8 prices).
2. ``INSERT … SELECT … ON CONFLICT (symbol, source, observed_at) DO NOTHING`` into
   ``prices.ticks``: replays and duplicates insert nothing.
3. Recompute the ``analytics.metal_prices`` rows of the hours that gained ticks
   (the hourly rule: docs/data-model.md).
4. Record the batch in ``pipeline.batches``, the outbox of ``pipeline.batch-loaded.v1``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from metalcast_core import METALS, BatchLoaded, PriceTick

_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS tick_staging (
    symbol      text,
    source      text,
    instrument  text,
    observed_at timestamptz,
    price       float8,
    currency    text,
    fetched_at  timestamptz,
    raw         text
) ON COMMIT DELETE ROWS
"""
_STAGING_COLUMNS = (
    "symbol",
    "source",
    "instrument",
    "observed_at",
    "price",
    "currency",
    "fetched_at",
    "raw",
)

_INSERT_TICKS = """
WITH inserted AS (
    INSERT INTO prices.ticks
        (symbol, source, instrument, observed_at, price, currency, fetched_at, raw)
    SELECT DISTINCT ON (symbol, source, observed_at)
        symbol, source, instrument, observed_at, price::numeric, currency, fetched_at, raw::jsonb
    FROM tick_staging
    ORDER BY symbol, source, observed_at, fetched_at DESC
    ON CONFLICT ON CONSTRAINT ticks_natural_key DO NOTHING
    RETURNING symbol, date_trunc('hour', observed_at, 'UTC') AS hour, instrument, currency
)
SELECT
    count(*)::int AS rows_inserted,
    coalesce(array_agg(DISTINCT symbol), '{}') AS symbols,
    min(hour) AS first_hour,
    max(hour) AS last_hour,
    coalesce(
        array_agg(DISTINCT hour) FILTER (
            WHERE symbol = ANY($1::text[]) AND instrument = 'spot' AND currency = 'USD'
        ),
        '{}'
    ) AS metal_hours
FROM inserted
"""


def _hourly_upsert_sql() -> str:
    picks = ",\n    ".join(
        f"max(price) FILTER (WHERE symbol = '{m.symbol}') AS {m.column}" for m in METALS
    )
    columns = ", ".join(m.column for m in METALS)
    updates = ", ".join(f"{m.column} = EXCLUDED.{m.column}" for m in METALS)
    return f"""
WITH hours AS (SELECT unnest($1::timestamptz[]) AS hour),
last_tick AS (
    SELECT DISTINCT ON (t.symbol, h.hour) h.hour, t.symbol, t.price
    FROM hours AS h
    JOIN prices.ticks AS t
      ON t.symbol = ANY($2::text[])
     AND t.observed_at >= h.hour
     AND t.observed_at < h.hour + interval '1 hour'
    WHERE t.instrument = 'spot' AND t.currency = 'USD'
    ORDER BY t.symbol, h.hour, t.observed_at DESC, t.source
)
INSERT INTO analytics.metal_prices (ts, {columns})
SELECT hour,
    {picks}
FROM last_tick
GROUP BY hour
ON CONFLICT (ts) DO UPDATE SET {updates}
"""


_HOURLY_UPSERT = _hourly_upsert_sql()
_METAL_SYMBOLS = [m.symbol for m in METALS]

_RECORD_BATCH = """
INSERT INTO pipeline.batches
    (batch_id, loaded_at, symbols, first_hour, last_hour, ticks_received, rows_inserted,
     duplicates, dead_lettered, event)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)
"""


def _row(tick: PriceTick) -> tuple[object, ...]:
    return (
        tick.symbol,
        tick.source,
        tick.instrument,
        tick.observed_at,
        tick.price,
        tick.currency,
        tick.fetched_at,
        None if tick.raw is None else json.dumps(tick.raw),
    )


async def write_batch(
    conn: asyncpg.Connection, ticks: Sequence[PriceTick], dead_lettered: int = 0
) -> BatchLoaded | None:
    """Store ``ticks``; returns the ``batch-loaded`` event, or ``None`` if nothing was new.

    The event is written to the outbox in the same transaction; the caller publishes it
    after committing Kafka offsets and then calls :func:`mark_published`.
    """
    if not ticks:
        return None
    async with conn.transaction():
        await conn.execute(_STAGING_DDL)
        await conn.copy_records_to_table(
            "tick_staging", records=[_row(t) for t in ticks], columns=_STAGING_COLUMNS
        )
        summary = await conn.fetchrow(_INSERT_TICKS, _METAL_SYMBOLS)
        assert summary is not None
        rows_inserted: int = summary["rows_inserted"]
        if rows_inserted == 0:
            return None
        metal_hours: list[datetime] = summary["metal_hours"]
        if metal_hours:
            await conn.execute(_HOURLY_UPSERT, metal_hours, _METAL_SYMBOLS)
        event = BatchLoaded(
            symbols=sorted(summary["symbols"]),
            first_hour=summary["first_hour"],
            last_hour=summary["last_hour"],
            rows_inserted=rows_inserted,
            ticks_received=len(ticks),
            duplicates=len(ticks) - rows_inserted,
            dead_lettered=dead_lettered,
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


async def find_refused(
    conn: asyncpg.Connection, ticks: Sequence[PriceTick]
) -> list[tuple[PriceTick, str]]:
    """Try each tick alone in a rolled-back transaction; return those the DB refuses."""
    refused: list[tuple[PriceTick, str]] = []
    for tick in ticks:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(_STAGING_DDL)
            await conn.copy_records_to_table(
                "tick_staging", records=[_row(tick)], columns=_STAGING_COLUMNS
            )
            await conn.fetchrow(_INSERT_TICKS, _METAL_SYMBOLS)
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            refused.append((tick, str(exc)))
        finally:
            await tx.rollback()
    return refused


async def unpublished_batches(conn: asyncpg.Connection) -> list[BatchLoaded]:
    rows = await conn.fetch(
        "SELECT event FROM pipeline.batches WHERE published_at IS NULL ORDER BY loaded_at"
    )
    return [BatchLoaded.model_validate_json(r["event"]) for r in rows]


async def mark_published(conn: asyncpg.Connection, event: BatchLoaded) -> None:
    await conn.execute(
        "UPDATE pipeline.batches SET published_at = now() WHERE batch_id = $1", event.batch_id
    )

"""Writes a batch of ticks to PostgreSQL in one transaction.

Fast path (new data, e.g. a backfill): binary COPY straight into ``prices.ticks`` inside a
savepoint. If any key already exists (a replay, a duplicate), the unique violation rolls the
savepoint back and the batch takes the general path:

1. COPY the ticks into a temporary staging table (binary COPY).
2. ``INSERT … SELECT … ON CONFLICT (symbol, observed_at, source) DO NOTHING`` into
   ``prices.ticks``: replays and duplicates insert nothing (within a batch, the first of
   two equal keys wins).
Then, on either path:

3. Bring the ``analytics.metal_prices`` rows of the hours that gained ticks up to date
   (the hourly rule: docs/data-model.md).
4. Record the batch in ``pipeline.batches``, the outbox of ``pipeline.batch-loaded.v1``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg

from metalcast_core import METALS, BatchLoaded, PriceTick

_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS tick_staging (
    symbol      text,
    source      text,
    instrument  text,
    observed_at timestamptz,
    price       numeric,
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
    SELECT symbol, source, instrument, observed_at, price, currency, fetched_at, raw::jsonb
    FROM tick_staging
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


_COLUMNS = ", ".join(m.column for m in METALS)
# A recomputed NULL never replaces a value: ticks are never deleted, so NULL only means "not
# visible to this transaction" (e.g. another sink instance's metal, committed meanwhile).
_KEEP_OTHERS = ", ".join(
    f"{m.column} = coalesce(EXCLUDED.{m.column}, m.{m.column})" for m in METALS
)


def _hourly_upsert_sql() -> str:
    """Recompute hours that already have a row, from every stored tick of those hours."""
    picks = ",\n    ".join(
        f"max(price) FILTER (WHERE symbol = '{m.symbol}') AS {m.column}" for m in METALS
    )
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
INSERT INTO analytics.metal_prices AS m (ts, {_COLUMNS})
SELECT hour,
    {picks}
FROM last_tick
GROUP BY hour
ON CONFLICT (ts) DO UPDATE SET {_KEEP_OTHERS}
"""


_PRICE_ARRAYS = ", ".join(f"${i + 2}::float8[]" for i in range(len(METALS)))
_BATCH_HOURS_UPSERT = f"""
INSERT INTO analytics.metal_prices AS m (ts, {_COLUMNS})
SELECT * FROM unnest($1::timestamptz[], {_PRICE_ARRAYS})
ON CONFLICT (ts) DO UPDATE SET {_KEEP_OTHERS}
"""

_HOURLY_UPSERT = _hourly_upsert_sql()
_METAL_SYMBOLS = [m.symbol for m in METALS]
_METAL_SET = frozenset(_METAL_SYMBOLS)
_COLUMN_OF = {m.symbol: m.column for m in METALS}

_RECORD_BATCH = """
INSERT INTO pipeline.batches
    (batch_id, loaded_at, symbols, first_hour, last_hour, ticks_received, rows_inserted,
     duplicates, dead_lettered, event)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)
"""


# ANALYZE when a batch grows the table by more than this share: the hourly upsert's plan
# depends on the row estimate, and a never-analysed table is estimated at a handful of rows
# (a first backfill then joins hours x ticks: seconds instead of milliseconds).
_GROWTH_BEFORE_ANALYZE = 0.1
_MIN_ROWS_BEFORE_ANALYZE = 1_000


async def _refresh_statistics_if_grown(conn: asyncpg.Connection, rows_inserted: int) -> None:
    if rows_inserted < _MIN_ROWS_BEFORE_ANALYZE:
        return
    estimate = await conn.fetchval(
        "SELECT reltuples FROM pg_class WHERE oid = 'prices.ticks'::regclass"
    )
    if estimate is None or estimate < 0 or rows_inserted > _GROWTH_BEFORE_ANALYZE * estimate:
        # Counts this transaction's own inserts; holds only a lock that allows writes.
        await conn.execute("ANALYZE prices.ticks")


def copy_row(tick: PriceTick) -> tuple[object, ...]:
    """A tick as a row of ``prices.ticks`` for binary COPY (columns: _STAGING_COLUMNS)."""
    return (
        tick.symbol,
        tick.source,
        tick.instrument,
        tick.observed_at,
        _decimal(tick.price),
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
    # Each tick's hour, as whole hours since the epoch: computed once, used by both steps.
    hours = [int(t.observed_at.timestamp()) // 3600 for t in ticks]
    async with conn.transaction():
        summary = await _copy_all_new(conn, ticks, hours)
        if summary is None:
            summary = await _insert_new(conn, ticks)
        if summary.rows_inserted == 0:
            return None
        await _refresh_statistics_if_grown(conn, summary.rows_inserted)
        if summary.metal_hours:
            await _update_hours(conn, ticks, hours, summary.metal_hours)
        event = BatchLoaded(
            symbols=sorted(summary.symbols),
            first_hour=summary.first_hour,
            last_hour=summary.last_hour,
            rows_inserted=summary.rows_inserted,
            ticks_received=len(ticks),
            duplicates=len(ticks) - summary.rows_inserted,
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


async def _update_hours(
    conn: asyncpg.Connection,
    ticks: Sequence[PriceTick],
    tick_hours: Sequence[int],
    hours: list[datetime],
) -> None:
    """Bring the analytics rows of ``hours`` up to date (the hourly rule).

    Where an hour's row is missing, or has NULL for a metal, no spot USD tick of that metal
    was stored for that hour before this batch (each such tick sets its hour's value in the
    same transaction, and one sink instance owns a metal's partition): the batch alone
    decides the value, computed here without touching ``prices.ticks``. Where the metal
    already has a value (a replay, a second source), the hour is recomputed in SQL from all
    its ticks.
    """
    stored = {
        int(r["ts"].timestamp()) // 3600: r
        for r in await conn.fetch(
            f"SELECT ts, {_COLUMNS} FROM analytics.metal_prices WHERE ts = ANY($1::timestamptz[])",
            hours,
        )
    }
    # hour -> symbol -> (observed_at, source, price) of the tick the hourly rule picks.
    picked: dict[int, dict[str, tuple[datetime, str, float]]] = {}
    recompute: set[int] = set()
    for t, hour in zip(ticks, tick_hours, strict=True):
        if not _in_analytics(t):
            continue
        row = stored.get(hour)
        if row is not None and row[_COLUMN_OF[t.symbol]] is not None:
            recompute.add(hour)
            continue
        by_symbol = picked.setdefault(hour, {})
        best = by_symbol.get(t.symbol)
        # Latest observation wins; on a tie, the source that sorts first; on an equal key,
        # the first in the batch (the one the insert kept).
        if (
            best is None
            or t.observed_at > best[0]
            or (t.observed_at == best[0] and t.source < best[1])
        ):
            by_symbol[t.symbol] = (t.observed_at, t.source, t.price)
    if picked:
        order = sorted(picked)
        columns = [
            [picked[h][m.symbol][2] if m.symbol in picked[h] else None for h in order]
            for m in METALS
        ]
        await conn.execute(_BATCH_HOURS_UPSERT, [_from_epoch_hour(h) for h in order], *columns)
    if recompute:
        await conn.execute(
            _HOURLY_UPSERT, [_from_epoch_hour(h) for h in sorted(recompute)], _METAL_SYMBOLS
        )


def _decimal(price: float) -> Decimal:
    # The shortest decimal that round-trips the float: the number the provider sent.
    # (A float goes to numeric as its exact binary expansion, slowly and with noise.)
    return Decimal(repr(price))


@dataclass(frozen=True)
class _Inserted:
    rows_inserted: int
    symbols: list[str]
    first_hour: datetime | None
    last_hour: datetime | None
    metal_hours: list[datetime]  # hours whose analytics row must be recomputed


def _in_analytics(tick: PriceTick) -> bool:
    """Whether the hourly rule counts this tick: a metal, spot, in USD."""
    return tick.symbol in _METAL_SET and tick.instrument == "spot" and tick.currency == "USD"


async def _copy_all_new(
    conn: asyncpg.Connection, ticks: Sequence[PriceTick], tick_hours: Sequence[int]
) -> _Inserted | None:
    """COPY straight into prices.ticks; ``None`` if any key exists already."""
    try:
        async with conn.transaction():  # a savepoint inside the batch's transaction
            await conn.copy_records_to_table(
                "ticks",
                schema_name="prices",
                records=[copy_row(t) for t in ticks],
                columns=_STAGING_COLUMNS,
            )
    except asyncpg.UniqueViolationError:
        return None
    metal_hours = {h for t, h in zip(ticks, tick_hours, strict=True) if _in_analytics(t)}
    symbols = {t.symbol for t in ticks}
    return _Inserted(
        rows_inserted=len(ticks),
        symbols=sorted(symbols),
        first_hour=_from_epoch_hour(min(tick_hours)),
        last_hour=_from_epoch_hour(max(tick_hours)),
        metal_hours=[_from_epoch_hour(h) for h in sorted(metal_hours)],
    )


async def _insert_new(conn: asyncpg.Connection, ticks: Sequence[PriceTick]) -> _Inserted:
    """Stage, then insert what is new (ON CONFLICT DO NOTHING)."""
    await conn.execute(_STAGING_DDL)
    await conn.copy_records_to_table(
        "tick_staging", records=[copy_row(t) for t in ticks], columns=_STAGING_COLUMNS
    )
    row = await conn.fetchrow(_INSERT_TICKS, _METAL_SYMBOLS)
    assert row is not None
    return _Inserted(
        rows_inserted=row["rows_inserted"],
        symbols=list(row["symbols"]),
        first_hour=row["first_hour"],
        last_hour=row["last_hour"],
        metal_hours=list(row["metal_hours"]),
    )


def _from_epoch_hour(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * 3600, tz=UTC)


async def find_refused(
    conn: asyncpg.Connection, ticks: Sequence[PriceTick]
) -> list[tuple[PriceTick, str]]:
    """Try each tick alone in a rolled-back transaction; return those the DB refuses."""
    refused: list[tuple[PriceTick, str]] = []
    for tick in ticks:
        tx = conn.transaction()
        await tx.start()
        try:
            await _insert_new(conn, [tick])
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

"""Writes a batch of ticks to PostgreSQL in one transaction.

A batch comes as columns (:class:`TickRows`), built with its hourly picks before the
transaction starts, so that the sink builds the next batch while PostgreSQL stores this one.

1. The columns that vary within the batch go by binary COPY into a temporary staging table;
   a column with one value for the whole batch (the source of a backfill, ``spot``, ``USD``,
   no ``raw``) goes as a parameter instead. Prices travel as float8, the cheapest to encode,
   and become numeric through their text: PostgreSQL prints a float8 as the shortest decimal
   that reads back as the same float (``extra_float_digits`` ≥ 1, set for the transaction),
   as Python's ``repr`` does, so the stored price is the number the provider sent.
2. Fast path (new data, e.g. a backfill): one statement inserts the staged rows into
   ``prices.ticks``, writes the batch's hourly picks into ``analytics.metal_prices`` (step 3),
   records the batch in the outbox (step 4) and marks earlier events published. If any key
   already exists (a replay, a duplicate), the unique violation rolls the transaction back
   and the batch takes the general path, in a new one: ``INSERT … SELECT … ON CONFLICT
   (symbol, observed_at, source) DO NOTHING``: replays and duplicates insert nothing (within
   a batch, the first of two equal keys wins).

Then, on either path:

3. Bring the ``analytics.metal_prices`` rows of the hours that gained ticks up to date
   (the hourly rule: docs/data-model.md): the batch decides an hour's metal that has no
   value yet; an hour whose metal already has one is recomputed from all its stored ticks.
4. Record the batch in ``pipeline.batches``, the outbox of ``pipeline.batch-loaded.v1``.
5. Record where the batch ends in each partition (``pipeline.consumer_positions``), so that the
   rows and the positions they were read up to are always of one piece: after a restore the
   sink resumes from the restored positions and re-reads what came after the backup.
"""

from __future__ import annotations

import itertools
import json
import operator
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg

from metalcast_core import METALS, BatchLoaded

# The columns of prices.ticks the sink writes, in this order everywhere.
TICK_COLUMNS = (
    "symbol",
    "source",
    "instrument",
    "observed_at",
    "price",
    "currency",
    "fetched_at",
    "raw",
)
# Columns that may go as one parameter when the whole batch shares a value, and their types.
_SHAREABLE = {
    "symbol": "text",
    "source": "text",
    "instrument": "text",
    "currency": "text",
    "raw": "jsonb",
}

_STAGING_DDL = """
SET LOCAL extra_float_digits = 1;
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


def _batch_hours_ctes(params: Sequence[str]) -> str:
    """CTEs that write a batch's picks (``params``: the hours, then a price array per metal)
    into analytics.metal_prices; ``stored`` holds the hours where a metal the batch has for
    that hour already had a value (as read before this statement's own writes): those the
    batch alone cannot decide, to recompute."""
    hours, *prices = params
    arrays = ", ".join(f"{p}::float8[]" for p in prices)
    had_value = " OR ".join(
        f"(b.{m.column} IS NOT NULL AND m.{m.column} IS NOT NULL)" for m in METALS
    )
    return f"""batch AS (
    SELECT to_timestamp(h * 3600) AS ts, {_COLUMNS}
    FROM unnest({hours}::int8[], {arrays}) AS b(h, {_COLUMNS})
),
stored AS (
    SELECT m.ts FROM analytics.metal_prices AS m JOIN batch AS b ON b.ts = m.ts
    WHERE m.ts = ANY(ARRAY(SELECT ts FROM batch)) AND ({had_value})
),
upserted AS (
    INSERT INTO analytics.metal_prices AS m (ts, {_COLUMNS})
    SELECT * FROM batch
    ON CONFLICT (ts) DO UPDATE SET {_KEEP_OTHERS}
)"""


def _batch_hours_upsert_sql() -> str:
    params = [f"${i + 1}" for i in range(1 + len(METALS))]
    return f"""
WITH {_batch_hours_ctes(params)}
SELECT coalesce(array_agg(ts ORDER BY ts), '{{}}') FROM stored
"""


_HOURLY_UPSERT = _hourly_upsert_sql()
_BATCH_HOURS_UPSERT = _batch_hours_upsert_sql()
_METAL_SYMBOLS = [m.symbol for m in METALS]
_METAL_SET = frozenset(_METAL_SYMBOLS)
_METAL_POSITION = {m.symbol: i for i, m in enumerate(METALS)}

# Where a consumer has read up to: (topic, partition) -> the next offset to read.
Positions = Mapping[tuple[str, int], int]
# The sink's rows in pipeline.consumer_positions.
SINK_CONSUMER = "sink"

_SAVE_POSITIONS = """
INSERT INTO pipeline.consumer_positions AS p (consumer, topic, partition, next_offset)
SELECT $1, t, n, o FROM unnest($2::text[], $3::int4[], $4::int8[]) AS x(t, n, o)
ON CONFLICT (consumer, topic, partition)
DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()
"""


async def save_positions(
    conn: asyncpg.Connection, positions: Positions, consumer: str = SINK_CONSUMER
) -> None:
    """Record ``positions`` (call it inside the transaction of the rows read up to there).
    A position may move back (a rebalance, a restore): that only means re-reading, and the
    writes are idempotent; a position never runs ahead of the rows stored with it."""
    if not positions:
        return
    keys = sorted(positions)
    await conn.execute(
        _SAVE_POSITIONS,
        consumer,
        [t for t, _ in keys],
        [n for _, n in keys],
        [positions[k] for k in keys],
    )


async def load_positions(
    conn: asyncpg.Connection, topics: Iterable[str], consumer: str = SINK_CONSUMER
) -> dict[tuple[str, int], int]:
    rows = await conn.fetch(
        "SELECT topic, partition, next_offset FROM pipeline.consumer_positions"
        " WHERE consumer = $1 AND topic = ANY($2::text[])",
        consumer,
        sorted(set(topics)),
    )
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


_RECORD_BATCH = """
INSERT INTO pipeline.batches
    (batch_id, loaded_at, symbols, first_hour, last_hour, ticks_received, rows_inserted,
     duplicates, dead_lettered, event)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)
"""


class TickFields(Protocol):
    """A tick as the writer reads it: a ``PriceTick`` or the sink decoder's ``WireTick``."""

    @property
    def symbol(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def instrument(self) -> str: ...
    @property
    def observed_at(self) -> datetime: ...
    @property
    def price(self) -> float: ...
    @property
    def currency(self) -> str: ...
    @property
    def fetched_at(self) -> datetime: ...
    @property
    def raw(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class HourlyPicks:
    """What a batch alone says about ``analytics.metal_prices`` (the hourly rule): for each
    UTC hour with a spot USD metal tick, each metal's price from the batch's last tick of
    that hour (latest observation; on a tie, the source that sorts first; on an equal key,
    the first in the batch, the one the insert keeps)."""

    hours: list[int]  # whole hours since the epoch, ascending
    prices: list[list[float | None]]  # per metal (METALS order), per hour; None: no tick

    @classmethod
    def of(cls, rows: TickRows) -> HourlyPicks:
        n = len(rows)
        counted: list[bool] | None = None  # None: every tick is spot USD
        if rows.instrument.count("spot") != n or rows.currency.count("USD") != n:
            counted = [
                i == "spot" and c == "USD"
                for i, c in zip(rows.instrument, rows.currency, strict=True)
            ]
        by_metal: list[dict[int, float]] = []
        for metal in METALS:
            # Column at a time, in C: the rows of this metal, their hours and prices.
            mask = list(map(metal.symbol.__eq__, rows.symbol))
            if counted is not None:
                mask = list(map(operator.and_, mask, counted))
            hours = list(itertools.compress(rows.hour, mask))
            picked = dict(zip(hours, itertools.compress(rows.price, mask), strict=True))
            if len(picked) < len(hours):  # several ticks of an hour: the rule decides
                picked = _last_of_each_hour(rows, list(itertools.compress(range(n), mask)))
            by_metal.append(picked)
        every = sorted(set().union(*by_metal))
        return cls(every, [list(map(picked.get, every)) for picked in by_metal])

    def only(self, hours: set[int]) -> HourlyPicks:
        keep = [k for k, h in enumerate(self.hours) if h in hours]
        return HourlyPicks(
            [self.hours[k] for k in keep], [[column[k] for k in keep] for column in self.prices]
        )


def _last_of_each_hour(rows: TickRows, indices: list[int]) -> dict[int, float]:
    """Per hour, the price of the tick the hourly rule picks among ``indices`` (one metal)."""
    observed, source, hour = rows.observed_at, rows.source, rows.hour
    best: dict[int, int] = {}
    for i in indices:
        j = best.setdefault(hour[i], i)
        if j != i and (
            observed[i] > observed[j] or (observed[i] == observed[j] and source[i] < source[j])
        ):
            best[hour[i]] = i
    return {h: rows.price[i] for h, i in best.items()}


@dataclass(frozen=True, slots=True, eq=False)
class TickRows:
    """A batch of ticks as columns, with what the hourly rule needs from them."""

    symbol: list[str]
    source: list[str]
    instrument: list[str]
    observed_at: list[datetime]
    price: list[float]
    currency: list[str]
    fetched_at: list[datetime]
    raw: list[str | None]  # JSON text
    hour: list[int]  # each tick's UTC hour, as whole hours since the epoch
    picks: HourlyPicks

    @classmethod
    def of(cls, ticks: Sequence[TickFields], picks: bool = True) -> TickRows:
        """``ticks`` as columns; ``picks=False`` leaves the hourly picks out, for a part of
        a batch that :meth:`concat` joins to others (which picks over the whole)."""
        raw = [t.raw for t in ticks]
        return cls.from_columns(
            symbol=[t.symbol for t in ticks],
            source=[t.source for t in ticks],
            instrument=[t.instrument for t in ticks],
            observed_at=[t.observed_at for t in ticks],
            price=[t.price for t in ticks],
            currency=[t.currency for t in ticks],
            fetched_at=[t.fetched_at for t in ticks],
            raw=[None] * len(raw) if raw.count(None) == len(raw) else [_json(r) for r in raw],
            picks=picks,
        )

    @classmethod
    def from_columns(
        cls,
        *,
        symbol: list[str],
        source: list[str],
        instrument: list[str],
        observed_at: list[datetime],
        price: list[float],
        currency: list[str],
        fetched_at: list[datetime],
        raw: list[str | None],
        hour: list[int] | None = None,
        picks: bool = True,
    ) -> TickRows:
        columns = (symbol, source, instrument, observed_at, price, currency, fetched_at, raw)
        if len({len(c) for c in columns}) > 1:
            raise ValueError("columns of different lengths")
        if hour is None:
            hour = [int(t.timestamp() // 3600) for t in observed_at]
        rows = cls(*columns, hour, _NO_PICKS)
        return cls(*columns, hour, HourlyPicks.of(rows)) if picks else rows

    @classmethod
    def concat(cls, parts: Sequence[TickRows]) -> TickRows:
        """One batch of the rows of ``parts``, in order, with its hourly picks."""
        if len(parts) == 1 and parts[0].picks is not _NO_PICKS:
            return parts[0]

        def joined(name: str) -> list[Any]:
            return list(itertools.chain.from_iterable(getattr(p, name) for p in parts))

        return cls.from_columns(
            symbol=joined("symbol"),
            source=joined("source"),
            instrument=joined("instrument"),
            observed_at=joined("observed_at"),
            price=joined("price"),
            currency=joined("currency"),
            fetched_at=joined("fetched_at"),
            raw=joined("raw"),
            hour=joined("hour"),
        )

    def __len__(self) -> int:
        return len(self.symbol)

    def take(self, indices: Sequence[int]) -> TickRows:
        """The rows at ``indices``, in that order."""
        return TickRows.from_columns(
            symbol=[self.symbol[i] for i in indices],
            source=[self.source[i] for i in indices],
            instrument=[self.instrument[i] for i in indices],
            observed_at=[self.observed_at[i] for i in indices],
            price=[self.price[i] for i in indices],
            currency=[self.currency[i] for i in indices],
            fetched_at=[self.fetched_at[i] for i in indices],
            raw=[self.raw[i] for i in indices],
        )

    def row(self, i: int) -> tuple[Any, ...]:
        return tuple(getattr(self, name)[i] for name in TICK_COLUMNS)


_NO_PICKS = HourlyPicks([], [[] for _ in METALS])


def _json(raw: dict[str, Any] | None) -> str | None:
    return None if raw is None else json.dumps(raw)


# ANALYZE when a batch grows the table by more than this share: the hourly upsert's plan
# depends on the row estimate, and a never-analysed table is estimated at a handful of rows
# (a first backfill then joins hours x ticks: seconds instead of milliseconds).
_GROWTH_BEFORE_ANALYZE = 0.1
_MIN_ROWS_BEFORE_ANALYZE = 1_000


async def _refresh_statistics_if_grown(
    conn: asyncpg.Connection, rows_inserted: int, estimate: float | None = None
) -> None:
    """``estimate``: ``pg_class.reltuples`` of prices.ticks, if already read."""
    if rows_inserted < _MIN_ROWS_BEFORE_ANALYZE:
        return
    if estimate is None:
        estimate = await conn.fetchval(
            "SELECT reltuples FROM pg_class WHERE oid = 'prices.ticks'::regclass"
        )
    if estimate is None or estimate < 0 or rows_inserted > _GROWTH_BEFORE_ANALYZE * estimate:
        # Counts this transaction's own inserts; holds only a lock that allows writes.
        await conn.execute("ANALYZE prices.ticks")


async def write_batch(
    conn: asyncpg.Connection,
    ticks: TickRows | Sequence[TickFields],
    dead_lettered: int = 0,
    published: Sequence[uuid.UUID] = (),
    positions: Positions | None = None,
) -> BatchLoaded | None:
    """Store ``ticks``; returns the ``batch-loaded`` event, or ``None`` if nothing was new.

    The event is written to the outbox in the same transaction; the caller publishes it
    after committing Kafka offsets, and marks it published (:func:`mark_published`, or by
    handing its id to the next call as ``published``: marked in that transaction).
    ``positions`` (where the batch ends in each partition) are saved in that transaction too.
    """
    rows = ticks if isinstance(ticks, TickRows) else TickRows.of(ticks)
    positions = positions or {}
    if not rows:
        if published or positions:
            async with conn.transaction():
                if published:
                    await mark_published(conn, *published)
                await save_positions(conn, positions)
        return None
    try:
        return await _write_all_new(conn, rows, dead_lettered, published, positions)
    except asyncpg.UniqueViolationError:
        pass  # a replay or a duplicate: the general path, in a new transaction
    return await _write_what_is_new(conn, rows, dead_lettered, published, positions)


def _fast_path_sql(select: _Select) -> str:
    """One statement for a batch of new ticks: the ticks, their hours (returning the hours to
    recompute), the outbox row, earlier events marked published; and the row estimate."""
    first = len(select.args) + 1  # the parameters after the SELECT list's
    hours = [f"${first + i}" for i in range(1 + len(METALS))]
    outbox = ", ".join(f"${first + len(hours) + i}" for i in range(10))
    published = f"${first + len(hours) + 10}"
    return f"""
WITH inserted AS (
    INSERT INTO {_TICKS} SELECT {select.columns} FROM tick_staging
),
{_batch_hours_ctes(hours)},
recorded AS (
    INSERT INTO pipeline.batches
        (batch_id, loaded_at, symbols, first_hour, last_hour, ticks_received, rows_inserted,
         duplicates, dead_lettered, event)
    VALUES ({outbox}::jsonb)
),
published AS (
    UPDATE pipeline.batches SET published_at = now() WHERE batch_id = ANY({published}::uuid[])
)
SELECT
    (SELECT coalesce(array_agg(ts ORDER BY ts), '{{}}') FROM stored) AS recompute,
    (SELECT reltuples FROM pg_class WHERE oid = 'prices.ticks'::regclass) AS estimate
"""


async def _write_all_new(
    conn: asyncpg.Connection,
    rows: TickRows,
    dead_lettered: int,
    published: Sequence[uuid.UUID],
    positions: Positions,
) -> BatchLoaded:
    """The fast path: every tick new (a backfill, new data). Raises
    ``UniqueViolationError`` (nothing written) if any key exists already."""
    event = BatchLoaded(
        symbols=sorted(set(rows.symbol)),
        first_hour=_from_epoch_hour(min(rows.hour)),
        last_hour=_from_epoch_hour(max(rows.hour)),
        rows_inserted=len(rows),
        ticks_received=len(rows),
        duplicates=0,
        dead_lettered=dead_lettered,
    )
    picks = rows.picks
    async with conn.transaction():
        select = await _stage(conn, rows)
        result = await conn.fetchrow(
            _fast_path_sql(select),
            *select.args,
            picks.hours,
            *picks.prices,
            *outbox_args(event),
            list(published),
        )
        assert result is not None
        await _refresh_statistics_if_grown(conn, len(rows), result["estimate"])
        if result["recompute"]:
            await conn.execute(_HOURLY_UPSERT, result["recompute"], _METAL_SYMBOLS)
        await save_positions(conn, positions)
    return event


async def _write_what_is_new(
    conn: asyncpg.Connection,
    rows: TickRows,
    dead_lettered: int,
    published: Sequence[uuid.UUID],
    positions: Positions,
) -> BatchLoaded | None:
    """The general path: insert what is new, bring its hours up to date."""
    async with conn.transaction():
        if published:
            await mark_published(conn, *published)
        await save_positions(conn, positions)
        summary = await _insert_new(conn, await _stage(conn, rows))
        if summary.rows_inserted == 0:
            return None
        await _refresh_statistics_if_grown(conn, summary.rows_inserted)
        picks = rows.picks.only(summary.metal_hours)
        if picks.hours:
            await _update_hours(conn, picks)
        event = BatchLoaded(
            symbols=sorted(summary.symbols),
            first_hour=summary.first_hour,
            last_hour=summary.last_hour,
            rows_inserted=summary.rows_inserted,
            ticks_received=len(rows),
            duplicates=len(rows) - summary.rows_inserted,
            dead_lettered=dead_lettered,
        )
        await conn.execute(_RECORD_BATCH, *outbox_args(event))
    return event


def outbox_args(event: BatchLoaded) -> tuple[object, ...]:
    return (
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


@dataclass(frozen=True, slots=True)
class _Select:
    """``SELECT`` list and parameters that read the staged batch as ``prices.ticks`` rows."""

    columns: str
    args: list[object]


async def _stage(conn: asyncpg.Connection, rows: TickRows) -> _Select:
    """COPY the batch's varying columns into the staging table; the others are parameters."""
    await conn.execute(_STAGING_DDL)
    copied: list[str] = []
    exprs: list[str] = []
    args: list[object] = []
    for name in TICK_COLUMNS:
        column: list[Any] = getattr(rows, name)
        if name in _SHAREABLE and column.count(column[0]) == len(column):
            args.append(column[0])
            exprs.append(f"${len(args)}::{_SHAREABLE[name]}")
            continue
        copied.append(name)
        exprs.append({"price": "price::text::numeric", "raw": "raw::jsonb"}.get(name, name))
    await conn.copy_records_to_table(
        "tick_staging",
        records=zip(*(getattr(rows, name) for name in copied), strict=True),
        columns=copied,
    )
    return _Select(", ".join(exprs), args)


@dataclass(frozen=True)
class _Inserted:
    rows_inserted: int
    symbols: list[str]
    first_hour: datetime | None
    last_hour: datetime | None
    metal_hours: set[int]  # hours that gained a metal's spot USD tick


_TICKS = f"prices.ticks ({', '.join(TICK_COLUMNS)})"


async def _insert_new(conn: asyncpg.Connection, select: _Select) -> _Inserted:
    """Insert what is new in the staged batch (ON CONFLICT DO NOTHING)."""
    metals = len(select.args) + 1
    row = await conn.fetchrow(
        f"""
WITH inserted AS (
    INSERT INTO {_TICKS}
    SELECT {select.columns} FROM tick_staging
    ON CONFLICT ON CONSTRAINT ticks_natural_key DO NOTHING
    RETURNING symbol, date_trunc('hour', observed_at, 'UTC') AS hour, instrument, currency
)
SELECT
    count(*)::int AS rows_inserted,
    coalesce(array_agg(DISTINCT symbol), '{{}}') AS symbols,
    min(hour) AS first_hour,
    max(hour) AS last_hour,
    coalesce(
        array_agg(DISTINCT hour) FILTER (
            WHERE symbol = ANY(${metals}::text[]) AND instrument = 'spot' AND currency = 'USD'
        ),
        '{{}}'
    ) AS metal_hours
FROM inserted
""",
        *select.args,
        _METAL_SYMBOLS,
    )
    assert row is not None
    return _Inserted(
        rows_inserted=row["rows_inserted"],
        symbols=list(row["symbols"]),
        first_hour=row["first_hour"],
        last_hour=row["last_hour"],
        metal_hours={int(h.timestamp() // 3600) for h in row["metal_hours"]},
    )


async def _update_hours(conn: asyncpg.Connection, picks: HourlyPicks) -> None:
    """Bring the analytics rows of the picked hours up to date (the hourly rule).

    Where an hour's row is missing, or has NULL for a metal, no spot USD tick of that metal
    was stored for that hour before this batch (each such tick sets its hour's value in the
    same transaction, and one sink instance owns a metal's partition): the batch alone
    decides the value, computed without touching ``prices.ticks``. Where the metal already
    has a value (a replay, a second source), the hour is recomputed in SQL from all its
    ticks.
    """
    recompute = await conn.fetchval(_BATCH_HOURS_UPSERT, picks.hours, *picks.prices)
    if recompute:
        await conn.execute(_HOURLY_UPSERT, recompute, _METAL_SYMBOLS)


def _from_epoch_hour(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * 3600, tz=UTC)


async def find_refused(conn: asyncpg.Connection, rows: TickRows) -> list[tuple[int, str]]:
    """Try each row alone in a rolled-back transaction; return those the DB refuses, as
    ``(index in rows, the database's reason)``."""
    refused: list[tuple[int, str]] = []
    for i in range(len(rows)):
        tx = conn.transaction()
        await tx.start()
        try:
            await _insert_new(conn, await _stage(conn, rows.take([i])))
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            refused.append((i, str(exc)))
        finally:
            await tx.rollback()
    return refused


# Which batch ids already have their event on the topic, among those published since a time.
PublishedSince = Callable[[datetime], Awaitable[set[uuid.UUID]]]


async def relay_stale(
    conn: asyncpg.Connection,
    older_than_s: float,
    announce: Callable[[BatchLoaded], Awaitable[None]],
    limit: int = 100,
    already: PublishedSince | None = None,
) -> list[uuid.UUID]:
    """Publish batch-loaded events still unpublished ``older_than_s`` after their commit (a
    lost acknowledgement, a crash between publishing and marking) and mark them published.

    ``already`` (the topic read back from just before the oldest of these commits) finds the
    events that did reach the topic: those are only marked, so that each batch has exactly one
    event. The rows stay locked (``FOR UPDATE SKIP LOCKED``) while their events are sent, so
    several sink instances relay each row once. Returns the ids sent again."""
    async with conn.transaction():
        rows = await conn.fetch(
            """
            SELECT batch_id, loaded_at, event FROM pipeline.batches
            WHERE published_at IS NULL AND loaded_at < now() - make_interval(secs => $1)
            ORDER BY loaded_at
            LIMIT $2
            FOR UPDATE SKIP LOCKED
            """,
            older_than_s,
            limit,
        )
        if not rows:
            return []
        seen: set[uuid.UUID] = set()
        if already is not None:
            seen = await already(min(r["loaded_at"] for r in rows) - _PUBLISH_CLOCK_SLACK)
        sent = []
        for row in rows:
            if row["batch_id"] not in seen:
                await announce(BatchLoaded.model_validate_json(row["event"]))
                sent.append(row["batch_id"])
        await mark_published(conn, *[r["batch_id"] for r in rows])
    return sent


# Kafka's timestamps are the producer's clock, the commit's is PostgreSQL's: read back from
# a little before the commit.
_PUBLISH_CLOCK_SLACK = timedelta(minutes=5)


async def copy_ticks(conn: asyncpg.Connection, records: Iterable[Sequence[Any]]) -> None:
    """COPY rows straight into ``prices.ticks`` (values in :data:`TICK_COLUMNS` order),
    bypassing the hourly rule and the outbox: for seeding tests and benchmarks."""
    await conn.copy_records_to_table(
        "ticks", schema_name="prices", records=records, columns=list(TICK_COLUMNS)
    )


async def mark_published(conn: asyncpg.Connection, *batch_ids: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE pipeline.batches SET published_at = now() WHERE batch_id = ANY($1::uuid[])",
        list(batch_ids),
    )

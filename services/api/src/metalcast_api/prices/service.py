"""Queries behind the prices endpoints (asyncpg; a connection is passed in)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from metalcast_core import Metal

# Newest spot USD tick per symbol: one backward scan of the natural-key index each.
LATEST_SQL = """
SELECT s.symbol, t.price::float8 AS price, t.currency, t.observed_at, t.source
FROM unnest($1::text[]) AS s(symbol)
CROSS JOIN LATERAL (
    SELECT price, currency, observed_at, source
    FROM prices.ticks
    WHERE symbol = s.symbol AND instrument = 'spot' AND currency = 'USD'
    ORDER BY observed_at DESC, source
    LIMIT 1
) AS t
ORDER BY array_position($1::text[], s.symbol)
"""

ANALYTICS_SQL = """
SELECT ts, xau::float8 AS xau, xag::float8 AS xag, xpt::float8 AS xpt, xpd::float8 AS xpd
FROM analytics.metal_prices
WHERE ts >= $1 AND ts < $2
ORDER BY ts
"""

WINDOW_SQL = """
SELECT ts, xau::float8 AS xau, xag::float8 AS xag, xpt::float8 AS xpt, xpd::float8 AS xpd
FROM ml.metal_prices_training
ORDER BY ts
"""


async def latest(conn: asyncpg.Connection, symbols: Sequence[str]) -> list[asyncpg.Record]:
    return list(await conn.fetch(LATEST_SQL, list(symbols)))


async def history(
    conn: asyncpg.Connection, metal: Metal, start: datetime, end: datetime
) -> list[asyncpg.Record]:
    # metal.column comes from the METALS constant, never from the request.
    sql = (
        f"SELECT ts, {metal.column}::float8 AS price FROM analytics.metal_prices "
        f"WHERE ts >= $1 AND ts < $2 AND {metal.column} IS NOT NULL ORDER BY ts"
    )
    return list(await conn.fetch(sql, start, end))


async def analytics(conn: asyncpg.Connection, start: datetime, end: datetime) -> list[Any]:
    return list(await conn.fetch(ANALYTICS_SQL, start, end))


async def training_window(conn: asyncpg.Connection) -> list[Any]:
    return list(await conn.fetch(WINDOW_SQL))


async def last_observation(conn: asyncpg.Connection, metal: Metal) -> datetime | None:
    """The hour of the newest non-null value of ``metal`` in analytics.metal_prices."""
    sql = (
        f"SELECT ts FROM analytics.metal_prices WHERE {metal.column} IS NOT NULL "
        "ORDER BY ts DESC LIMIT 1"
    )
    value: datetime | None = await conn.fetchval(sql)
    return value

"""Queries behind the instruments endpoints (asyncpg; a connection is passed in)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from metalcast_api.errors import not_found
from metalcast_core import Instrument, fetch_catalogue

HOURLY_SQL = """
SELECT ts, price::float8 AS price FROM analytics.instrument_prices_hourly
WHERE symbol = $1 AND ts >= $2 AND ts < $3 ORDER BY ts
"""

DAILY_SQL = """
SELECT date, open::float8 AS open, high::float8 AS high, low::float8 AS low,
       close::float8 AS close, volume::float8 AS volume, source
FROM analytics.instrument_prices_daily
WHERE symbol = $1 AND date >= ($2 AT TIME ZONE 'UTC')::date AND date < ($3 AT TIME ZONE 'UTC')::date
ORDER BY date
"""


async def catalogue(conn: asyncpg.Connection) -> list[Instrument]:
    return await fetch_catalogue(conn)


async def instrument_or_404(conn: asyncpg.Connection, symbol: str) -> Instrument:
    """The catalogued instrument; 404 naming the known symbols otherwise."""
    instruments = await fetch_catalogue(conn)
    for inst in instruments:
        if inst.symbol == symbol.upper():
            return inst
    known = ", ".join(i.symbol for i in instruments)
    not_found(f"unknown instrument {symbol!r}; known instruments: {known}")


async def hourly(
    conn: asyncpg.Connection, symbol: str, start: datetime, end: datetime
) -> list[Any]:
    return list(await conn.fetch(HOURLY_SQL, symbol, start, end))


async def daily(conn: asyncpg.Connection, symbol: str, start: datetime, end: datetime) -> list[Any]:
    return list(await conn.fetch(DAILY_SQL, symbol, start, end))

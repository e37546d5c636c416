"""Queries behind the analytics endpoints: each reads one documented view
(docs/instruments.md) with the caller's symbols and period."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg

MONTHLY_SQL = """
SELECT symbol, month, days, avg_close, low, high, range, range_pct_of_avg, first_close,
       last_close
FROM analytics.monthly_summary
WHERE symbol = ANY($1::text[]) AND month >= date_trunc('month', $2::date) AND month < $3
ORDER BY symbol, month
"""

DRAWDOWNS_SQL = """
SELECT symbol, peak_date AS start_date, peak_close AS start_close, trough_date AS end_date,
       trough_close AS end_close, change, days
FROM analytics.drawdowns
WHERE symbol = ANY($1::text[]) AND peak_date >= $2 AND peak_date < $3
ORDER BY change ASC, symbol LIMIT $4
"""

RALLIES_SQL = """
SELECT symbol, trough_date AS start_date, trough_close AS start_close, peak_date AS end_date,
       peak_close AS end_close, change, days
FROM analytics.rallies
WHERE symbol = ANY($1::text[]) AND trough_date >= $2 AND trough_date < $3
ORDER BY change DESC, symbol LIMIT $4
"""

RETURNS_SQL = """
SELECT symbol, date, close, previous_close, simple_return, log_return, volatility_30,
       volatility_30_annualised
FROM analytics.daily_returns
WHERE symbol = ANY($1::text[]) AND date >= $2 AND date < $3
ORDER BY symbol, date
"""

# analytics.return_correlations over the whole history; for a period, the same query on the
# returns of that period (the view's definition with the period applied first).
CORRELATIONS_SQL = """
WITH r AS (
    SELECT symbol, date, log_return FROM analytics.daily_returns
    WHERE symbol = ANY($1::text[]) AND date >= $2 AND date < $3 AND log_return IS NOT NULL
)
SELECT a.symbol AS symbol_a, b.symbol AS symbol_b, count(*)::int AS days,
       corr(a.log_return, b.log_return)::float8 AS correlation
FROM r AS a JOIN r AS b ON b.date = a.date AND b.symbol > a.symbol
GROUP BY a.symbol, b.symbol
ORDER BY a.symbol, b.symbol
"""


async def monthly(
    conn: asyncpg.Connection, symbols: Sequence[str], start: date, end: date
) -> list[Any]:
    return list(await conn.fetch(MONTHLY_SQL, list(symbols), start, end))


async def moves(
    conn: asyncpg.Connection,
    kind: str,
    symbols: Sequence[str],
    start: date,
    end: date,
    limit: int,
) -> list[Any]:
    sql = DRAWDOWNS_SQL if kind == "drawdowns" else RALLIES_SQL
    return list(await conn.fetch(sql, list(symbols), start, end, limit))


async def returns(
    conn: asyncpg.Connection, symbols: Sequence[str], start: date, end: date
) -> list[Any]:
    return list(await conn.fetch(RETURNS_SQL, list(symbols), start, end))


async def correlations(
    conn: asyncpg.Connection, symbols: Sequence[str], start: date, end: date
) -> list[Any]:
    return list(await conn.fetch(CORRELATIONS_SQL, list(symbols), start, end))

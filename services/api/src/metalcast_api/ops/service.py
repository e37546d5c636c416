"""Readiness checks, data freshness and the backups overview."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from metalcast_core import METALS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

FRESHNESS_SQL = """
SELECT s.symbol,
       (SELECT max(observed_at) FROM prices.ticks
        WHERE symbol = s.symbol AND instrument = 'spot' AND currency = 'USD') AS last_tick
FROM unnest($1::text[]) AS s(symbol)
"""

LAST_HOURS_SQL = "SELECT " + ", ".join(
    f"(SELECT max(ts) FROM analytics.metal_prices WHERE {m.column} IS NOT NULL) AS {m.column}"
    for m in METALS
)

BACKUPS_SQL = """
SELECT id, status, started_at, finished_at, duration_s, total_rows, models, total_bytes, error,
       verify_status, verified_at, verify_duration_s, verify_error
FROM ops.backups_overview
ORDER BY started_at DESC
LIMIT $1
"""


async def check_database(pool: asyncpg.Pool, timeout_s: float) -> str:
    try:
        async with asyncio.timeout(timeout_s), pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL does not answer: {type(exc).__name__}: {exc}"
    return "ok"


async def check_s3(s3: S3Client, bucket: str, timeout_s: float) -> str:
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.to_thread(s3.head_bucket, Bucket=bucket)
    except Exception as exc:
        return f"S3 bucket {bucket} is not reachable: {type(exc).__name__}: {exc}"
    return "ok"


async def freshness(conn: asyncpg.Connection, symbols: list[str]) -> list[dict[str, Any]]:
    ticks = {r["symbol"]: r["last_tick"] for r in await conn.fetch(FRESHNESS_SQL, symbols)}
    hours_row = await conn.fetchrow(LAST_HOURS_SQL)
    hours: dict[str, datetime | None] = {
        m.symbol: (hours_row[m.column] if hours_row else None) for m in METALS
    }
    return [{"symbol": s, "last_tick": ticks.get(s), "last_hour": hours.get(s)} for s in symbols]


async def backups(conn: asyncpg.Connection, limit: int) -> list[dict[str, Any]]:
    """The newest backups with their newest verification; [] before migration 0003."""
    if await conn.fetchval("SELECT to_regclass('ops.backups_overview')") is None:
        return []
    return [dict(r) for r in await conn.fetch(BACKUPS_SQL, limit)]

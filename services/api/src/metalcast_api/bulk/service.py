"""Queries of ``bulk.ingest_runs``."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

_SELECT = """
SELECT run_id, data_url, input, engine, files, rows_good, rows_quarantined, seconds,
       published_at, report
FROM bulk.ingest_runs
"""


def _row(record: asyncpg.Record) -> dict[str, Any]:
    row = dict(record)
    if isinstance(row["report"], str):
        row["report"] = json.loads(row["report"])
    return row


async def runs(conn: asyncpg.Connection, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(_SELECT + " ORDER BY published_at DESC, run_id DESC LIMIT $1", limit)
    return [_row(r) for r in rows]


async def run(conn: asyncpg.Connection, run_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(_SELECT + " WHERE run_id = $1", run_id)
    return None if row is None else _row(row)

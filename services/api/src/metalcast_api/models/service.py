"""Queries behind the models endpoints that the registry does not answer itself."""

from __future__ import annotations

from typing import Any

import asyncpg

POINTERS_SQL = "SELECT symbol, updated_at, updated_by FROM ml.production_models"

RUNS_SQL = """
SELECT r.id, r.trigger, r.status, r.error, r.family, r.x_size, r.y_size, r.window_start,
       r.window_end, r.started_at, r.finished_at,
       extract(epoch FROM r.finished_at - r.started_at)::float8 AS duration_s,
       coalesce(
           (SELECT jsonb_agg(jsonb_build_object(
                       'symbol', tr.symbol, 'status', tr.status, 'reason', tr.reason,
                       'version', v.version) ORDER BY tr.symbol)
            FROM ml.training_results AS tr
            LEFT JOIN ml.model_versions AS v ON v.id = tr.model_version_id
            WHERE tr.run_id = r.id),
           '[]'::jsonb) AS results
FROM ml.training_runs AS r
WHERE ($2::text IS NULL OR r.status = $2)
ORDER BY r.started_at DESC, r.id DESC
LIMIT $1
"""


async def pointers(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    return {r["symbol"]: r for r in await conn.fetch(POINTERS_SQL)}


async def training_runs(
    conn: asyncpg.Connection, limit: int, status: str | None
) -> list[dict[str, Any]]:
    import json

    out = []
    for r in await conn.fetch(RUNS_SQL, limit, status):
        row = dict(r)
        results = row["results"]
        row["results"] = json.loads(results) if isinstance(results, str) else results
        out.append(row)
    return out

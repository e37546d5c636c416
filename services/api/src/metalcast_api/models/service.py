"""Queries behind the models endpoints that the registry does not answer itself."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

POINTERS_SQL = """
SELECT symbol, updated_at, updated_by, pinned_at, pinned_by, pin_reason
FROM ml.production_models
"""

RUNS_SQL = """
SELECT r.id, r.trigger, r.status, r.error, r.family, r.candidates, r.x_size, r.y_size,
       r.window_start, r.window_end, r.started_at, r.finished_at,
       extract(epoch FROM r.finished_at - r.started_at)::float8 AS duration_s,
       coalesce(
           (SELECT jsonb_agg(jsonb_build_object(
                       'symbol', tr.symbol, 'status', tr.status, 'reason', tr.reason,
                       'version', v.version, 'window_start', tr.window_start,
                       'window_end', tr.window_end, 'window_hours', tr.window_hours,
                       'decision', tr.decision) ORDER BY tr.symbol)
            FROM ml.training_results AS tr
            LEFT JOIN ml.model_versions AS v ON v.id = tr.model_version_id
            WHERE tr.run_id = r.id),
           '[]'::jsonb) AS results
FROM ml.training_runs AS r
WHERE ($2::text IS NULL OR r.status = $2)
ORDER BY r.started_at DESC, r.id DESC
LIMIT $1
"""

# The newest run (or the one asked for) that backtested the symbol, with what it did for it.
BACKTEST_RUN_SQL = """
SELECT r.id, r.trigger, r.status, r.started_at, r.finished_at,
       tr.status AS result, v.version, tr.window_start, tr.window_end, tr.window_hours,
       tr.decision
FROM ml.training_runs AS r
LEFT JOIN ml.training_results AS tr ON tr.run_id = r.id AND tr.symbol = $1
LEFT JOIN ml.model_versions AS v ON v.id = tr.model_version_id
WHERE EXISTS (SELECT 1 FROM ml.backtests AS b WHERE b.run_id = r.id AND b.symbol = $1)
  AND ($2::bigint IS NULL OR r.id = $2)
ORDER BY r.started_at DESC, r.id DESC
LIMIT 1
"""

BACKTESTS_SQL = """
SELECT candidate_key, candidate, result
FROM ml.backtests
WHERE run_id = $1 AND symbol = $2
ORDER BY candidate, candidate_key
"""


def as_json(value: Any) -> Any:
    """A jsonb value as asyncpg returns it (text without a codec) -> Python."""
    return json.loads(value) if isinstance(value, str) else value


async def pointers(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    return {r["symbol"]: r for r in await conn.fetch(POINTERS_SQL)}


async def training_runs(
    conn: asyncpg.Connection, limit: int, status: str | None
) -> list[dict[str, Any]]:
    out = []
    for r in await conn.fetch(RUNS_SQL, limit, status):
        row = dict(r)
        row["results"] = as_json(row["results"]) or []
        row["candidates"] = as_json(row["candidates"]) or []
        out.append(row)
    return out


@dataclass(frozen=True)
class RunBacktests:
    run: dict[str, Any]  # the run and what it did for the symbol
    results: list[dict[str, Any]]  # per candidate: key, name and the stored Score JSON


async def backtests(
    conn: asyncpg.Connection, symbol: str, run_id: int | None
) -> RunBacktests | None:
    """Every candidate's backtest of ``symbol`` in the newest run that has one (or in
    ``run_id``); ``None`` when there is none."""
    row = await conn.fetchrow(BACKTEST_RUN_SQL, symbol, run_id)
    if row is None:
        return None
    run = dict(row)
    run["decision"] = as_json(run["decision"]) or {}
    results = [
        {"candidate_key": r["candidate_key"], "name": r["candidate"], **as_json(r["result"])}
        for r in await conn.fetch(BACKTESTS_SQL, row["id"], symbol)
    ]
    return RunBacktests(run, results)

"""The trainer's bookkeeping in PostgreSQL: runs, per-symbol results, backtests and the
backtest forecast cache. Every function takes an asyncpg connection."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import numpy as np

from metalcast_models.backtest import CacheKey, OriginForecast, Score
from metalcast_models.fitting import jsonable

INTERRUPTED = "interrupted: the trainer stopped before the run finished (closed at start-up)"


async def start_run(
    conn: asyncpg.Connection,
    trigger: str,
    batch_id: Any,
    events: int,
    family: str,
    x_size: int,
    y_size: int,
    candidates: Sequence[Mapping[str, Any]],
) -> int:
    value = await conn.fetchval(
        """
        INSERT INTO ml.training_runs
            (trigger, trigger_batch_id, trigger_events, family, x_size, y_size, candidates)
        VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) RETURNING id
        """,
        trigger,
        batch_id,
        events,
        family,
        x_size,
        y_size,
        json.dumps(list(candidates)),
    )
    return int(value)


async def finish_run(
    conn: asyncpg.Connection,
    run_id: int,
    status: str,
    error: str | None,
    window_start: datetime | None,
    window_end: datetime | None,
    timings: Mapping[str, float],
) -> None:
    await conn.execute(
        """
        UPDATE ml.training_runs
        SET status = $2, error = $3, window_start = $4, window_end = $5,
            finished_at = now(), timings = $6::jsonb
        WHERE id = $1
        """,
        run_id,
        status,
        error,
        window_start,
        window_end,
        json.dumps(dict(timings)),
    )


async def close_interrupted(conn: asyncpg.Connection) -> list[int]:
    """Mark runs left ``running`` by a trainer that died as ``failed`` (interrupted)."""
    rows = await conn.fetch(
        """
        UPDATE ml.training_runs SET status = 'failed', error = $1, finished_at = now()
        WHERE status = 'running' RETURNING id
        """,
        INTERRUPTED,
    )
    return [int(r["id"]) for r in rows]


async def record_result(
    conn: asyncpg.Connection,
    run_id: int,
    symbol: str,
    status: str,
    *,
    reason: str | None = None,
    version_id: int | None = None,
    window: Mapping[str, Any] | None = None,
    decision: Mapping[str, Any] | None = None,
) -> None:
    """What a run did for one symbol, with the window it used and the decision."""
    window = window or {}
    await conn.execute(
        """
        INSERT INTO ml.training_results
            (run_id, symbol, status, reason, model_version_id, window_start, window_end,
             window_hours, decision)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
        """,
        run_id,
        symbol,
        status,
        reason,
        version_id,
        window.get("start"),
        window.get("end"),
        window.get("hours"),
        json.dumps(dict(decision or {})),
    )


async def record_backtests(
    conn: asyncpg.Connection, run_id: int, symbol: str, scores: Iterable[Score]
) -> None:
    await conn.executemany(
        """
        INSERT INTO ml.backtests (run_id, symbol, candidate_key, candidate, result)
        VALUES ($1, $2, $3, $4, $5::jsonb)
        """,
        [
            (
                run_id,
                symbol,
                s.candidate["key"],
                s.candidate["name"],
                json.dumps(jsonable(s.as_json()), allow_nan=False),
            )
            for s in scores
        ],
    )


async def load_cache(
    conn: asyncpg.Connection, symbol: str, keys: Sequence[str], since: datetime
) -> dict[CacheKey, OriginForecast]:
    rows = await conn.fetch(
        """
        SELECT candidate_key, origin, window_hash, scale, points, se, failed
        FROM ml.backtest_forecasts
        WHERE symbol = $1 AND candidate_key = ANY($2::text[]) AND origin >= $3
        """,
        symbol,
        list(keys),
        since,
    )
    return {
        (r["candidate_key"], r["origin"]): OriginForecast(
            origin=r["origin"],
            window_hash=r["window_hash"],
            scale=float(r["scale"]),
            points=np.asarray(r["points"], dtype=float),
            se=None if r["se"] is None else np.asarray(r["se"], dtype=float),
            failed=r["failed"],
        )
        for r in rows
    }


async def save_cache(
    conn: asyncpg.Connection, symbol: str, new: Mapping[str, Sequence[OriginForecast]]
) -> int:
    """Upsert newly computed forecasts (a changed window replaces the old forecast)."""
    rows = [
        (
            symbol,
            key,
            f.origin,
            f.window_hash,
            f.scale,
            [float(p) for p in f.points],
            None if f.se is None else [float(x) if np.isfinite(x) else None for x in f.se],
            f.failed,
        )
        for key, forecasts in new.items()
        for f in forecasts
    ]
    if rows:
        await conn.executemany(
            """
            INSERT INTO ml.backtest_forecasts
                (symbol, candidate_key, origin, window_hash, scale, points, se, failed)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (symbol, candidate_key, origin) DO UPDATE
                SET window_hash = EXCLUDED.window_hash, scale = EXCLUDED.scale,
                    points = EXCLUDED.points, se = EXCLUDED.se, failed = EXCLUDED.failed,
                    created_at = now()
            """,
            rows,
        )
    return len(rows)

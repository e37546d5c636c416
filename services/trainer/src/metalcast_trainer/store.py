"""The trainer's bookkeeping in PostgreSQL: runs, per-symbol results, backtests and the
backtest forecast cache. Every function takes an asyncpg connection."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import numpy as np

from metalcast_models.backtest import CacheKey, OriginForecast, Score

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


@dataclass(frozen=True)
class Result:
    """What a run did for one symbol (``ml.training_results``)."""

    symbol: str
    status: str
    reason: str | None = None
    version_id: int | None = None
    window: Mapping[str, Any] | None = None
    decision: Mapping[str, Any] | None = None


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
    await record_results(
        conn, run_id, [Result(symbol, status, reason, version_id, window, decision)]
    )


async def record_results(conn: asyncpg.Connection, run_id: int, results: Sequence[Result]) -> None:
    rows = []
    for r in results:
        window = r.window or {}
        rows.append(
            (
                run_id,
                r.symbol,
                r.status,
                r.reason,
                r.version_id,
                window.get("start"),
                window.get("end"),
                window.get("hours"),
                json.dumps(dict(r.decision or {})),
            )
        )
    await conn.executemany(
        """
        INSERT INTO ml.training_results
            (run_id, symbol, status, reason, model_version_id, window_start, window_end,
             window_hours, decision)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
        """,
        rows,
    )


async def record_backtests(
    conn: asyncpg.Connection, run_id: int, symbol: str, scores: Iterable[Score]
) -> None:
    await record_backtest_rows(
        conn,
        run_id,
        [(symbol, s.candidate["key"], s.candidate["name"], s.json_text()) for s in scores],
    )


async def record_backtest_rows(
    conn: asyncpg.Connection, run_id: int, rows: Sequence[tuple[str, str, str, str]]
) -> None:
    """Backtests as (symbol, candidate key, candidate name, result as JSON text), in one
    round trip."""
    await conn.executemany(
        """
        INSERT INTO ml.backtests (run_id, symbol, candidate_key, candidate, result)
        VALUES ($1, $2, $3, $4, $5::jsonb)
        """,
        [(run_id, *row) for row in rows],
    )


async def load_cache(
    conn: asyncpg.Connection, symbol: str, keys: Sequence[str], since: datetime
) -> dict[CacheKey, OriginForecast]:
    return (await load_caches(conn, {symbol: (keys, since)})).get(symbol, {})


async def load_caches(
    conn: asyncpg.Connection, wanted: Mapping[str, tuple[Sequence[str], datetime]]
) -> dict[str, dict[CacheKey, OriginForecast]]:
    """The cached backtest forecasts of many symbols in one query (``wanted``: symbol ->
    (candidate keys, earliest origin)), by symbol."""
    keys = sorted({k for ks, _ in wanted.values() for k in ks})
    rows = await conn.fetch(
        """
        SELECT f.symbol, f.candidate_key, f.origin, f.window_hash, f.scale, f.points, f.se,
               f.failed
        FROM unnest($1::text[], $2::timestamptz[]) AS w (symbol, since)
        JOIN ml.backtest_forecasts AS f ON f.symbol = w.symbol AND f.origin >= w.since
        WHERE f.candidate_key = ANY($3::text[])
        """,
        list(wanted),
        [since for _, since in wanted.values()],
        keys,
    )
    caches: dict[str, dict[CacheKey, OriginForecast]] = {symbol: {} for symbol in wanted}
    symbol_keys = {symbol: set(ks) for symbol, (ks, _) in wanted.items()}
    for r in rows:
        if r["candidate_key"] not in symbol_keys[r["symbol"]]:
            continue
        caches[r["symbol"]][(r["candidate_key"], r["origin"])] = OriginForecast(
            origin=r["origin"],
            window_hash=r["window_hash"],
            scale=float(r["scale"]),
            points=np.asarray(r["points"], dtype=float),
            se=None if r["se"] is None else np.asarray(r["se"], dtype=float),
            failed=r["failed"],
        )
    return caches


async def save_cache(
    conn: asyncpg.Connection, symbol: str, new: Mapping[str, Sequence[OriginForecast]]
) -> int:
    """Upsert newly computed forecasts (a changed window replaces the old forecast)."""
    return await save_caches(conn, {symbol: new})


async def save_caches(
    conn: asyncpg.Connection, new: Mapping[str, Mapping[str, Sequence[OriginForecast]]]
) -> int:
    """:func:`save_cache` for many symbols (``new``: symbol -> candidate key -> forecasts)
    in one round trip."""
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
        for symbol, by_key in new.items()
        for key, forecasts in by_key.items()
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

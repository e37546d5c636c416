"""Queries of the newest LightGBM valuation version, its fit and its points."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from metalcast_models.valuation import FAMILY, SYMBOL


def _js(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def newest_fit(conn: asyncpg.Connection) -> dict[str, Any] | None:
    """The newest (not deleted) LightGBM version of the valuation key with its fit."""
    row = await conn.fetchrow(
        """
        SELECT v.id, v.symbol, v.version, v.run_id, v.created_at, v.family, v.hyperparameters,
               v.window_start, v.window_end, v.n_observations,
               (p.model_version_id = v.id) IS TRUE AS in_production,
               f.features, f.importances, f.search, f.backtest, f.decision, f.forecast
        FROM ml.model_versions AS v
        JOIN ml.valuation_fits AS f ON f.model_version_id = v.id
        LEFT JOIN ml.production_models AS p ON p.symbol = v.symbol
        WHERE v.symbol = $1 AND v.family = $2 AND v.deleted_at IS NULL
        ORDER BY v.version DESC LIMIT 1
        """,
        SYMBOL,
        FAMILY,
    )
    if row is None:
        return None
    out = dict(row)
    for key in ("hyperparameters", "features", "importances", "search", "backtest", "forecast"):
        out[key] = _js(out[key])
    return out


async def production(conn: asyncpg.Connection) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        """
        SELECT v.version, v.candidate, v.family FROM ml.production_models AS p
        JOIN ml.model_versions AS v ON v.id = p.model_version_id WHERE p.symbol = $1
        """,
        SYMBOL,
    )
    return None if row is None else dict(row)


async def points(conn: asyncpg.Connection, version_id: int, kind: str, days: int) -> list[Any]:
    rows = await conn.fetch(
        """
        SELECT date, actual, value, model_value, naive, fallback, fallback_reason FROM (
            SELECT * FROM ml.valuation_points WHERE model_version_id = $1 AND kind = $2
            ORDER BY date DESC LIMIT $3
        ) AS p ORDER BY date
        """,
        version_id,
        kind,
        days,
    )
    return list(rows)

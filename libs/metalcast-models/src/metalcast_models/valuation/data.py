"""Reading the valuation model's inputs from PostgreSQL: the macro series with their
publication lags (``macro.series``), their vintages (``macro.observations``) and daily gold
(``analytics.instrument_prices_daily``). Each is one query; the vintages' read is served by
the table's primary key (series_id, date, realtime_start)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

from metalcast_models.valuation.features import VINTAGE_COLUMNS

# A series whose level is a feature: rates and spreads (bounded). Others (prices, indices)
# give their relative change only (metalcast_models.valuation.features).
LEVEL_UNITS = ("percent",)


@dataclass(frozen=True)
class MacroSeries:
    series_id: str
    lag_days: int
    units: str


async def fetch_series(conn: Any) -> list[MacroSeries]:
    rows = await conn.fetch(
        "SELECT series_id, publication_lag_days, units FROM macro.series ORDER BY series_id"
    )
    return [MacroSeries(r["series_id"], int(r["publication_lag_days"]), r["units"]) for r in rows]


async def fetch_vintages(
    conn: Any, series_ids: Sequence[str], since: date | None = None
) -> pd.DataFrame:
    """Every vintage of ``series_ids`` dated from ``since`` on (all when ``None``); value
    ``NaN`` where it is NULL (FRED's ".")."""
    rows = await conn.fetch(
        """
        SELECT series_id, date, realtime_start, value::float8 AS value
        FROM macro.observations
        WHERE series_id = ANY($1::text[]) AND ($2::date IS NULL OR date >= $2::date)
        ORDER BY series_id, date, realtime_start
        """,
        list(series_ids),
        since,
    )
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(VINTAGE_COLUMNS))
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    return frame


async def fetch_daily_closes(conn: Any, symbol: str = "XAU") -> pd.Series:
    """``symbol``'s daily closes (from its bars, else its ticks' last price per UTC day),
    indexed by date, ascending."""
    rows = await conn.fetch(
        """
        SELECT date, close::float8 AS close FROM analytics.instrument_prices_daily
        WHERE symbol = $1 ORDER BY date
        """,
        symbol,
    )
    return pd.Series(
        [r["close"] for r in rows], index=[r["date"] for r in rows], dtype=float, name=symbol
    )

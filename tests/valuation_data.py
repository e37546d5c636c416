"""Daily data for the gold valuation model's tests and bench (dev-only).

Macro: real daily and monthly series that PyPI packages ship (``arch.data``, from FRED): WTI
crude (DCOILWTICO, daily, FRED's "." kept as missing), the VIX (VIXCLS, daily), Moody's AAA
and BAA corporate yields (monthly) and core CPI (CPILFESL, monthly). Their **vintages are
synthetic**: FRED's real vintages are not in those packages, so each observation is first
released ``lag`` days after its date, and a seeded share of them is first released with an
error and revised to the real value ``revise_after`` days later (a new row with a later
``realtime_start``, as ``macro.observations`` keeps it).

Gold: there is no real daily gold series in our packages, so gold is the **simulated**
source's XAU (``metalcast_ingestor.sources.simulated``): its 20:00 UTC price each weekday is
the day's close.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from metalcast_core import PostgresSettings

START = date(2014, 1, 2)
END = date(2018, 12, 31)
CLOSE_HOUR = 20
OPEN_END = date(9999, 12, 31)


@dataclass(frozen=True)
class MacroSpec:
    series_id: str
    title: str
    frequency: str
    lag_days: int
    revise_after: int
    revised_share: float
    error: float  # relative size of a first release's error


SPECS = (
    MacroSpec("DCOILWTICO", "Crude Oil Prices: WTI", "daily", 1, 7, 0.2, 0.01),
    MacroSpec("VIXCLS", "CBOE Volatility Index: VIX", "daily", 1, 5, 0.1, 0.02),
    MacroSpec("AAA", "Moody's Seasoned Aaa Corporate Bond Yield", "monthly", 32, 31, 0.3, 0.01),
    MacroSpec("BAA", "Moody's Seasoned Baa Corporate Bond Yield", "monthly", 32, 31, 0.3, 0.01),
    MacroSpec("CPILFESL", "Core CPI (all urban consumers)", "monthly", 44, 30, 0.5, 0.002),
)
LAGS = {s.series_id: s.lag_days for s in SPECS}
LEVELS = frozenset({"VIXCLS", "AAA", "BAA"})  # percent: their level is a feature


def real_series() -> dict[str, pd.Series]:
    """Each series' real values (NaN where FRED had "."), indexed by date."""
    from arch.data import core_cpi, default, vix, wti

    frames = {
        "DCOILWTICO": wti.load()["DCOILWTICO"],
        "VIXCLS": vix.load()["vix"],
        "AAA": default.load()["AAA"],
        "BAA": default.load()["BAA"],
        "CPILFESL": core_cpi.load()["CPILFESL"],
    }
    out = {}
    for name, series in frames.items():
        series = series.astype(float)
        series.index = [pd.Timestamp(d).date() for d in series.index]
        out[name] = series[(series.index >= START - timedelta(days=400))]
    return out


def vintages(seed: int = 7) -> pd.DataFrame:
    """series_id, date, realtime_start, realtime_end, value: a first release per observation,
    a revision for a seeded share (synthetic, see the module docstring)."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    real = real_series()
    for spec in SPECS:
        series = real[spec.series_id]
        for stamp, value in zip(series.index, series.to_numpy(dtype=float), strict=True):
            day: date = stamp
            first = day + timedelta(days=spec.lag_days)
            if first > END + timedelta(days=1):
                continue
            true = None if np.isnan(value) else round(float(value), 4)
            revised = true is not None and rng.random() < spec.revised_share
            if revised:
                assert true is not None
                wrong = round(true * (1 + spec.error * rng.standard_normal()), 4)
                second = first + timedelta(days=spec.revise_after)
                rows.append(_row(spec, day, first, second - timedelta(days=1), wrong))
                rows.append(_row(spec, day, second, OPEN_END, true))
            else:
                rows.append(_row(spec, day, first, OPEN_END, true))
    return pd.DataFrame(rows)


def _row(spec: MacroSpec, day: date, start: date, end: date, value: float | None) -> dict[str, Any]:
    return {
        "series_id": spec.series_id,
        "date": day,
        "realtime_start": start,
        "realtime_end": end,
        "value": value,
    }


def gold_closes(start: date = START, end: date = END, seed: int = 42) -> pd.Series:
    """The simulated source's XAU at 20:00 UTC on each weekday, indexed by date."""
    from metalcast_ingestor.sources.simulated import SERIES, _hour_index, _Series

    path = _Series(seed, "XAU", SERIES["XAU"])
    days = [d.date() for d in pd.bdate_range(start, end)]
    first = _hour_index(datetime.combine(days[0], datetime.min.time(), UTC))
    stop = _hour_index(datetime.combine(days[-1], datetime.min.time(), UTC)) + 24
    prices = path.prices(first, stop)
    values = [prices[(d - days[0]).days * 24 + CLOSE_HOUR] for d in days]
    return pd.Series(values, index=days, dtype=float, name="XAU")


async def seed_database(pg: PostgresSettings) -> tuple[int, int]:
    """Insert the series into ``macro.series``, their vintages into ``macro.observations``
    (as the sink's macro loop writes them) and gold's closes as XAU ticks; returns the
    number of vintages and of days."""
    import asyncpg

    from metalcast_sink.writer import copy_ticks

    conn = await asyncpg.connect(pg.url)
    try:
        await conn.executemany(
            """
            INSERT INTO macro.series (series_id, title, units, frequency, publication_lag_days)
            VALUES ($1, $2, $3, $4, $5)
            """,
            [
                (
                    s.series_id,
                    s.title,
                    "percent" if s.series_id in LEVELS else "index",
                    s.frequency,
                    s.lag_days,
                )
                for s in SPECS
            ],
        )
        v = vintages()
        fetched = datetime.now(UTC)
        await conn.copy_records_to_table(
            "observations",
            schema_name="macro",
            columns=["series_id", "date", "realtime_start", "realtime_end", "value", "fetched_at"],
            records=[
                (r.series_id, r.date, r.realtime_start, r.realtime_end, r.value, fetched)
                for r in v.itertuples()
            ],
        )
        closes = gold_closes()
        ticks = [
            (
                "XAU",
                "simulated",
                "spot",
                datetime.combine(d, datetime.min.time(), UTC) + timedelta(hours=CLOSE_HOUR),
                round(float(c), 4),
                "USD",
                fetched,
                None,
            )
            for d, c in zip(closes.index, closes.to_numpy(dtype=float), strict=True)
        ]
        await copy_ticks(conn, ticks)
        return len(v), len(closes)
    finally:
        await conn.close()

"""Point-in-time feature rows for the gold valuation model.

The row of day ``D`` holds only what was knowable on ``D`` (before gold's close on ``D``, the
target):

* **macro**, per series ``S`` with publication lag ``L_S`` days: among the observations dated
  ``<= D - L_S``, each date's latest vintage with ``realtime_start <= D``; the feature is the
  value of the newest such date whose latest known vintage has a value (``NULL``, FRED's
  ``"."``, is missing, never zero). A value that *was* known is carried forward while its
  observation date is at most ``max_age_days`` before ``D - L_S``; older, the feature is
  missing (``NaN``) rather than invented. A series in ``levels`` (rates, spreads: bounded)
  gives its level ``S`` and its change ``S__chg`` (the level minus the level knowable
  ``change_rows`` rows earlier); any other (prices, indices: trending) only its relative
  change ``S__chg`` (log of the ratio of the same two levels), so the trees never see a
  level that drifts out of every range they were trained on.
* **gold**, from closes dated strictly before ``D``: ``gold_vs_ema30`` (log of the last close
  over the 30-day exponential moving average of the closes, span 30, no bias adjustment),
  ``gold_ret_1``/``_5``/``_20`` (log returns up to the last close).

Target: ``target`` = ``log(close_D / close_prev)``, ``close_prev`` the last close before
``D``. The columns ``close``, ``close_prev`` and ``ema30`` ride along (not features).

:func:`point_in_time_features` also returns, per row and series, the observation date and the
``realtime_start`` of the value it used (the provenance a test checks on every row).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

import numpy as np
import pandas as pd

EMA_SPAN: Final = 30
RETURN_LAGS: Final = (1, 5, 20)
GOLD_FEATURES: Final = ("gold_vs_ema30", *(f"gold_ret_{k}" for k in RETURN_LAGS))
VINTAGE_COLUMNS: Final = ("series_id", "date", "realtime_start", "value")
MAX_AGE_DAYS: Final = 45  # a monthly series' last value stays usable until the next is due
CHANGE_ROWS: Final = 20


@dataclass(frozen=True)
class PointInTime:
    """Feature rows (index: the row dates) and each macro value's provenance."""

    frame: pd.DataFrame  # features, then target, close, close_prev, ema30
    features: tuple[str, ...]
    observation_dates: pd.DataFrame  # row date x series: the observation date used (or NaT)
    realtime_starts: pd.DataFrame  # row date x series: the vintage's realtime_start (or NaT)


def _as_date(value: object) -> date:
    stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    return stamp.date()


def known_values(
    vintages: pd.DataFrame,
    lag_days: int,
    dates: Sequence[date],
    max_age_days: int = MAX_AGE_DAYS,
) -> tuple[list[float], list[date | None], list[date | None]]:
    """One series: for each date in ascending ``dates``, (value, observation date, realtime
    start) as knowable that day (see the module docstring); ``NaN``/``None`` where nothing
    usable was known.

    One sweep: a vintage becomes usable on ``max(realtime_start, date + lag)``; a later
    vintage of the same date replaces it from its own availability on."""
    if list(dates) != sorted(dates):
        raise ValueError("dates must be ascending")
    lag = timedelta(days=lag_days)
    events: list[tuple[date, date, date, float]] = []  # (usable from, obs date, rs, value)
    for obs, rs, value in zip(
        vintages["date"], vintages["realtime_start"], vintages["value"], strict=True
    ):
        obs_d, rs_d = _as_date(obs), _as_date(rs)
        v = float(value) if value is not None and not pd.isna(value) else math.nan
        events.append((max(rs_d, obs_d + lag), obs_d, rs_d, v))
    events.sort(key=lambda e: (e[0], e[2]))
    state: dict[date, tuple[date, float]] = {}  # obs date -> (realtime_start, value)
    newest: date | None = None  # the newest obs date whose known vintage has a value
    values: list[float] = []
    obs_out: list[date | None] = []
    rs_out: list[date | None] = []
    k = 0
    for day in dates:
        while k < len(events) and events[k][0] <= day:
            _, obs_d, rs_d, v = events[k]
            k += 1
            held = state.get(obs_d)
            if held is not None and held[0] > rs_d:
                continue  # an older vintage than the one already known
            state[obs_d] = (rs_d, v)
            if not math.isnan(v):
                if newest is None or obs_d > newest:
                    newest = obs_d
            elif newest == obs_d:  # revised to missing: fall back to the newest with a value
                known = [d for d, (_, x) in state.items() if not math.isnan(x)]
                newest = max(known) if known else None
        if newest is not None and (day - lag) - newest <= timedelta(days=max_age_days):
            rs_d, v = state[newest]
            values.append(v)
            obs_out.append(newest)
            rs_out.append(rs_d)
        else:
            values.append(math.nan)
            obs_out.append(None)
            rs_out.append(None)
    return values, obs_out, rs_out


def gold_features(closes: pd.Series, dates: Sequence[date]) -> pd.DataFrame:
    """Gold's own features for each date, from closes dated strictly before it, and the
    target columns. ``closes``: indexed by date, ascending."""
    closes = closes.dropna().sort_index()
    idx = [_as_date(d) for d in closes.index]
    values = closes.to_numpy(dtype=float)
    if np.any(values <= 0):
        raise ValueError("gold closes must be positive")
    ema = pd.Series(values).ewm(span=EMA_SPAN, adjust=False).mean().to_numpy()
    logp = np.log(values)
    by_date = dict(zip(idx, values, strict=True))
    stamps = np.array(idx, dtype="datetime64[D]")
    rows = []
    for day in dates:
        n = int(np.searchsorted(stamps, np.datetime64(day)))
        # n: how many closes are dated strictly before ``day``
        row: dict[str, float] = {}
        last = n - 1
        row["close_prev"] = values[last] if last >= 0 else math.nan
        row["ema30"] = ema[last] if last >= 0 else math.nan
        row["gold_vs_ema30"] = logp[last] - math.log(ema[last]) if last >= 0 else math.nan
        for k in RETURN_LAGS:
            row[f"gold_ret_{k}"] = logp[last] - logp[last - k] if last - k >= 0 else math.nan
        close = by_date.get(day, math.nan)
        row["close"] = close
        row["target"] = math.log(close / row["close_prev"]) if last >= 0 else math.nan
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index(list(dates), name="date"))


def point_in_time_features(
    vintages: pd.DataFrame,
    lags: Mapping[str, int],
    closes: pd.Series,
    dates: Sequence[date],
    *,
    max_age_days: int = MAX_AGE_DAYS,
    change_rows: int = CHANGE_ROWS,
    levels: Collection[str] | None = None,
) -> PointInTime:
    """Feature rows for ``dates`` (ascending): every series in ``lags`` (in its order), then
    gold's own features; see the module docstring. ``vintages``: columns series_id, date,
    realtime_start, value (NULL/NaN: missing). ``levels``: the series whose level is a
    feature (``None``: all). Pure: no I/O, the inputs are not changed."""
    missing = [c for c in VINTAGE_COLUMNS if c not in vintages.columns]
    if missing:
        raise ValueError(f"vintages lack column(s) {', '.join(missing)}")
    days = [_as_date(d) for d in dates]
    index = pd.Index(days, name="date")
    macro: dict[str, list[float]] = {}
    obs: dict[str, list[date | None]] = {}
    rss: dict[str, list[date | None]] = {}
    groups = dict(tuple(vintages.groupby("series_id", sort=False)))
    empty = vintages.iloc[0:0]
    for series_id, lag in lags.items():
        values, o, r = known_values(groups.get(series_id, empty), lag, days, max_age_days)
        macro[series_id], obs[series_id], rss[series_id] = values, o, r
    frame = pd.DataFrame(macro, index=index, dtype=float)
    names: list[str] = []
    for series_id in lags:
        level = frame[series_id]
        if levels is None or series_id in levels:
            frame[f"{series_id}__chg"] = level - level.shift(change_rows)
            names += [series_id, f"{series_id}__chg"]
        else:
            ratio = level / level.shift(change_rows)
            frame[f"{series_id}__chg"] = np.log(ratio.where(ratio > 0))
            names.append(f"{series_id}__chg")
    gold = gold_features(closes, days)
    frame = pd.concat([frame[names], gold], axis=1)
    names += list(GOLD_FEATURES)
    return PointInTime(frame, tuple(names), _dates_frame(obs, index), _dates_frame(rss, index))


def _dates_frame(columns: Mapping[str, list[date | None]], index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(
        {k: pd.to_datetime(pd.Series(v, dtype="object", index=index)) for k, v in columns.items()},
        index=index,
    )

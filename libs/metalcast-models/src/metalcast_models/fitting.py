"""Fitting one series: the checks that turn bad data into a reason, then the fit itself.

Window policy: the window is the last ``x_size`` *observed* hourly values of the series (the
hours that carry a price). Hours in between without a value (a closed market, a silent
source, a daily-only source) are skipped, never imputed: the model sees consecutive entries,
and the window records its first and last hour and how many hours it spans. A ticker is
refused, with a reason, when

* the source has no column for it: ``no training data for <ticker>``;
* fewer than ``x_size`` values were observed: ``too few rows: ...``;
* a value is not positive: ``non-positive price ...``;
* the window is constant: ``constant series ...``;
* the fit raises, does not converge or predicts a non-finite value.

Nothing here raises for bad data: every outcome is a :class:`FitResult`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from metalcast_models._quiet import is_known_noise
from metalcast_models.families import Family, get_family
from metalcast_models.metrics import MetricValue, insample_metrics


@dataclass(frozen=True, slots=True)
class FitResult:
    """The outcome for one ticker: ``ok`` with a fitted forecaster, or failed with a reason."""

    ticker: str
    family: str
    hyperparameters: dict[str, Any]
    ok: bool
    reason: str | None = None
    forecaster: Any = field(default=None, repr=False, compare=False)
    params: dict[str, float | None] = field(default_factory=dict)
    metrics: dict[str, MetricValue] = field(default_factory=dict)
    window_start: datetime | None = None
    window_end: datetime | None = None  # the cutoff: the last hour trained on (UTC)
    n_obs: int = 0
    window_hours: int = 0  # hours from the window's first to its last value, both counted
    fit_seconds: float = 0.0
    warnings: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        """Everything but the forecaster, as JSON-able values."""
        return {
            "ticker": self.ticker,
            "family": self.family,
            "hyperparameters": jsonable(self.hyperparameters),
            "ok": self.ok,
            "reason": self.reason,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "n_obs": self.n_obs,
            "window_hours": self.window_hours,
            "fit_seconds": self.fit_seconds,
            "warnings": list(self.warnings),
        }


def jsonable(value: Any) -> Any:
    """A JSON-safe copy: mappings with string keys, lists for tuples, numpy scalars as Python
    numbers, and non-finite floats (NaN, infinities) as ``None``."""
    # Exact built-in types first: backtest scores are thousands of floats in nested dicts
    # and lists, and the generic checks (abstract Mapping) cost ~5 ms a symbol.
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): jsonable(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def normalise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """UTC hourly index (floored to the hour, last duplicate wins), complete, ascending."""
    frame = frame.copy()
    index = pd.DatetimeIndex(frame.index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    frame.index = index.floor("h")
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    frame = frame.apply(pd.to_numeric, errors="coerce").astype(float)
    frame = frame.replace([np.inf, -np.inf], np.nan)
    if len(frame.index) == 0:
        return frame
    grid = pd.date_range(frame.index[0], frame.index[-1], freq="h", name="ts")
    return frame.reindex(grid)


def observed_window(series: pd.Series, x_size: int) -> pd.Series:
    """The last ``x_size`` observed (non-missing) values of ``series``, oldest first."""
    return series.dropna().iloc[-x_size:]


def span_hours(start: datetime | None, end: datetime | None) -> int:
    """Hours from ``start`` to ``end``, both counted (0 when either is missing)."""
    if start is None or end is None:
        return 0
    return int((end - start).total_seconds() // 3600) + 1


def window_problem(series: pd.Series, x_size: int) -> str | None:
    """Why the last ``x_size`` observed values of ``series`` can't be used, or ``None``."""
    window = observed_window(series, x_size)
    count = len(window)
    if count < x_size:
        if count == 0:
            return f"too few rows: no observed value, need {x_size}"
        return f"too few rows: {count} observed hourly values, need {x_size}"
    values = window.to_numpy(dtype=float)
    bad = np.flatnonzero(values <= 0)
    if len(bad):
        return f"non-positive price {values[bad[0]]:g} at {window.index[bad[0]].isoformat()}"
    spread = float(np.ptp(values))
    if spread <= 1e-12 * float(np.max(np.abs(values))):
        return f"constant series (all {x_size} values are {values[0]:g})"
    return None


def as_entries(values: np.ndarray[Any, Any], end: datetime, name: str) -> pd.Series:
    """Consecutive entries as sktime wants them: a contiguous, tz-naive hourly index that
    ends at ``end`` (UTC), so the forecaster's cutoff is the window's last real hour and
    step ``h`` is the ``h``-th entry after it."""
    stamp = pd.Timestamp(end)
    stamp = stamp.tz_convert(None) if stamp.tzinfo is not None else stamp
    index = pd.date_range(end=stamp, periods=len(values), freq="h")
    return pd.Series(np.asarray(values, dtype=float), index=index, name=name)


def fit_frame(
    frame: pd.DataFrame,
    tickers: Sequence[str],
    x_size: int,
    family: str = "arima",
    params: Mapping[str, Any] | None = None,
    *,
    keep_forecasters: bool = True,
) -> dict[str, FitResult]:
    """Fit one forecaster per ticker on the last ``x_size`` hours of ``frame``."""
    fam = get_family(family)
    hyperparameters = fam.resolve(params)
    frame = normalise_frame(frame)
    results: dict[str, FitResult] = {}
    for ticker in tickers:
        if ticker not in frame.columns:
            result = _failed(ticker, fam, hyperparameters, f"no training data for {ticker}")
        else:
            result = fit_series(ticker, frame[ticker], x_size, fam, hyperparameters)
        if not keep_forecasters and result.forecaster is not None:
            result = _without_forecaster(result)
        results[ticker] = result
    return results


def fit_series(
    ticker: str,
    series: pd.Series,
    x_size: int,
    family: Family,
    hyperparameters: dict[str, Any],
) -> FitResult:
    """Check and fit one (normalised, hourly, UTC) series. Never raises for bad data."""
    problem = window_problem(series, x_size)
    window = observed_window(series, x_size)
    start = window.index[0].to_pydatetime() if len(window) else None
    end = window.index[-1].to_pydatetime() if len(window) else None
    if problem is not None:
        return _failed(ticker, family, hyperparameters, problem, start, end, len(window))
    assert end is not None

    # sktime is given tz-naive UTC hours: with a tz-aware index it converts to periods and
    # warns that the timezone is dropped. forecast.py puts UTC back on predictions.
    y = as_entries(window.to_numpy(dtype=float), end, ticker)
    began = time.perf_counter()
    kept: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            forecaster = family.build(hyperparameters)
            forecaster.fit(y)
            reason = family.check_fitted(forecaster)
            params: dict[str, float | None] = {}
            metrics: dict[str, MetricValue] = {}
            if reason is None:
                point = family.forecast_one(forecaster)
                if not math.isfinite(point):
                    reason = f"one-step forecast is not finite ({point})"
            if reason is None:
                params = family.extract_params(forecaster)
                residuals = family.in_sample_residuals(forecaster)
                metrics = insample_metrics(forecaster, y, residuals)
        for w in caught:
            if is_known_noise(w.message):
                continue
            if reason is None and type(w.message).__name__ == "ConvergenceWarning":
                reason = f"did not converge: {w.message}"
            kept.append(f"{type(w.message).__name__}: {w.message}")
    except Exception as exc:  # a failed fit is a result, never an exception out of train()
        reason = f"fit failed: {type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - began
    if reason is not None:
        return _failed(
            ticker, family, hyperparameters, reason, start, end, x_size, seconds, tuple(kept)
        )
    return FitResult(
        ticker=ticker,
        family=family.name,
        hyperparameters=dict(hyperparameters),
        ok=True,
        forecaster=forecaster,
        params=params,
        metrics=metrics,
        window_start=start,
        window_end=end,
        n_obs=x_size,
        window_hours=span_hours(start, end),
        fit_seconds=seconds,
        warnings=tuple(kept),
    )


def _failed(
    ticker: str,
    family: Family,
    hyperparameters: dict[str, Any],
    reason: str,
    start: datetime | None = None,
    end: datetime | None = None,
    n_obs: int = 0,
    seconds: float = 0.0,
    kept: tuple[str, ...] = (),
) -> FitResult:
    return FitResult(
        ticker=ticker,
        family=family.name,
        hyperparameters=dict(hyperparameters),
        ok=False,
        reason=reason,
        window_start=start,
        window_end=end,
        n_obs=n_obs,
        window_hours=span_hours(start, end),
        fit_seconds=seconds,
        warnings=kept,
    )


def _without_forecaster(result: FitResult) -> FitResult:
    from dataclasses import replace

    return replace(result, forecaster=None)

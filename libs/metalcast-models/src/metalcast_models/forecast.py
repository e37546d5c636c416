"""Point forecasts with prediction intervals, indexed by UTC hour."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from metalcast_models._quiet import quiet_sktime


def coverage_label(coverage: float) -> str:
    return f"{coverage * 100:g}"


def predict_with_intervals(
    forecaster: Any, horizon: int, coverage: Sequence[float] = (0.8, 0.95)
) -> pd.DataFrame:
    """``horizon`` steps ahead: ``point`` and ``lower_<c>``/``upper_<c>`` per coverage.

    Intervals come from sktime's ``predict_interval`` for every family that has it
    (ARIMA: the SARIMAX forecast distribution; naive: sktime's own, from the in-sample
    one-step residual variance, widening with sqrt(h); theta: its own formula). A forecaster
    without that capability gets normal intervals from its in-sample residual standard
    deviation, widening with sqrt(h). Index: UTC timestamps of the forecast hours.
    """
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    levels = sorted({float(c) for c in coverage})
    if not levels or not all(0.0 < c < 1.0 for c in levels):
        raise ValueError("coverage values must lie strictly between 0 and 1")
    fh = list(range(1, horizon + 1))
    with quiet_sktime():
        point = forecaster.predict(fh=fh)
        if forecaster.get_tag("capability:pred_int", False):
            bounds = _sktime_intervals(forecaster, fh, levels)
        else:
            bounds = _residual_intervals(forecaster, point, levels)
    out = pd.DataFrame({"point": np.asarray(point, dtype=float)}, index=_utc(point.index))
    for label, (lower, upper) in bounds.items():
        out[f"lower_{label}"] = lower
        out[f"upper_{label}"] = upper
    return out


def _sktime_intervals(
    forecaster: Any, fh: list[int], levels: list[float]
) -> dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
    frame = forecaster.predict_interval(fh=fh, coverage=levels)
    bounds: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
    for level in levels:
        lower = upper = None
        for i, (_, cov, side) in enumerate(frame.columns):
            if math.isclose(float(cov), level):
                column = frame.iloc[:, i].to_numpy(dtype=float)
                if side == "lower":
                    lower = column
                else:
                    upper = column
        if lower is None or upper is None:
            raise RuntimeError(f"predict_interval returned no {level} interval")
        bounds[coverage_label(level)] = (lower, upper)
    return bounds


def _residual_intervals(
    forecaster: Any, point: pd.Series, levels: list[float]
) -> dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
    residuals = np.asarray(forecaster.predict_residuals(), dtype=float)
    residuals = residuals[np.isfinite(residuals)]
    sigma = float(np.std(residuals, ddof=1)) if len(residuals) > 1 else math.nan
    centre = np.asarray(point, dtype=float)
    spread = sigma * np.sqrt(np.arange(1, len(centre) + 1))
    bounds = {}
    for level in levels:
        z = NormalDist().inv_cdf(0.5 + level / 2)
        bounds[coverage_label(level)] = (centre - z * spread, centre + z * spread)
    return bounds


def _utc(index: pd.Index) -> pd.DatetimeIndex:
    if isinstance(index, pd.PeriodIndex):
        index = index.to_timestamp()
    stamps = pd.DatetimeIndex(index)
    return stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")

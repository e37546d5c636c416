"""In-sample metrics: does the fitted model beat "repeat the last value" on its own window?

The model's one-step in-sample predictions are ``y - residuals`` (sktime's
``predict_residuals`` on the training window). The baseline predicts ``y[t-1]`` for ``y[t]``.
Both are scored on the same hours: from the second point on, wherever the model has a
prediction (ARIMA with d=1 has none for the first point). In-sample scores flatter a model
whose parameters were fitted on these very points: they are a sanity check, not an
out-of-sample evaluation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from metalcast_models._quiet import quiet_sktime

MetricValue = float | int | bool | None


def error_stats(actual: np.ndarray[Any, Any], predicted: np.ndarray[Any, Any]) -> dict[str, float]:
    """MAE, RMSE and MAPE (in percent) of ``predicted`` against ``actual`` (> 0)."""
    errors = actual - predicted
    return {
        "mae": float(np.mean(np.abs(errors))),
        "rmse": float(math.sqrt(float(np.mean(errors * errors)))),
        "mape": float(100.0 * np.mean(np.abs(errors) / np.abs(actual))),
    }


def insample_metrics(
    forecaster: Any, y: pd.Series, residuals: np.ndarray[Any, Any] | None = None
) -> dict[str, MetricValue]:
    """Model and naive-baseline MAE/RMSE/MAPE on the training window ``y``.

    ``residuals`` (aligned with ``y``, ``NaN`` where there is no prediction) default to
    sktime's ``predict_residuals``.

    Keys: ``n``, ``mae``, ``rmse``, ``mape`` (percent), ``naive_mae``, ``naive_rmse``,
    ``naive_mape``, ``rmse_skill`` (``1 - rmse / naive_rmse``; ``None`` when the baseline
    is perfect) and ``beats_naive`` (model RMSE strictly below the baseline's).
    """
    if residuals is None:
        with quiet_sktime():
            predicted = forecaster.predict_residuals()
        model_residuals = pd.Series(predicted).reindex(y.index).to_numpy(dtype=float)
    else:
        model_residuals = np.array(residuals, dtype=float)
    if len(model_residuals) != len(y):
        raise ValueError(f"{len(model_residuals)} residuals for {len(y)} points")
    values = y.to_numpy(dtype=float)
    usable = np.isfinite(model_residuals)
    usable[0] = False  # the baseline has no prediction for the first point
    if not usable.any():
        return {"n": 0}
    actual = values[usable]
    model = error_stats(actual, actual - model_residuals[usable])
    naive_predictions = np.concatenate([[math.nan], values[:-1]])
    naive = error_stats(actual, naive_predictions[usable])
    skill = 1.0 - model["rmse"] / naive["rmse"] if naive["rmse"] > 0 else None
    return {
        "n": int(usable.sum()),
        **model,
        **{f"naive_{k}": v for k, v in naive.items()},
        "rmse_skill": skill,
        "beats_naive": model["rmse"] < naive["rmse"],
    }

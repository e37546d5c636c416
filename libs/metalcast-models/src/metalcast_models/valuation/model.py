"""The gradient-boosted gold valuation model: LightGBM on point-in-time feature rows.

* **Target**: gold's log return from the last close before ``D`` to the close on ``D``
  (:mod:`metalcast_models.valuation.features`); the price is ``close_prev * exp(prediction)``.
* **Time-series cross-validation**: expanding windows (:func:`expanding_splits`): fold ``k``
  trains on rows ``[0, min_train + k * block)`` and validates on the next ``block`` rows, so
  every validation row is after every training row of its fold. Nothing is shuffled anywhere.
* **Grid search**: every combination of the grid is scored by its mean validation MAE over
  the folds; the grid, each combination's fold scores and the best parameters are kept
  (:class:`GridSearch`) and recorded with the version.
* **Fallback**: trees cannot extrapolate. A forecast whose feature row has a value outside
  the ``[min, max]`` that feature had in training, or a missing value where training never
  had one, is replaced by gold's 30-day EMA; the reason is kept per forecast.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

FAMILY: Final = "lightgbm-valuation"
SYMBOL: Final = "XAU-VAL"  # daily gold's key in the registry (the metals' XAU stays hourly)
ARTIFACT_NAME: Final = "valuation.lgb.txt"
DEFAULT_GRID: Final[Mapping[str, Sequence[Any]]] = {
    "num_leaves": (7, 15),
    "learning_rate": (0.03, 0.1),
    "n_estimators": (100, 300),
}
FIXED_PARAMS: Final[Mapping[str, Any]] = {
    "min_child_samples": 20,
    "reg_lambda": 1.0,
    "subsample": 1.0,  # no row sampling: nothing random, nothing shuffled
    "colsample_bytree": 1.0,
    "random_state": 0,
    "deterministic": True,
    "force_row_wise": True,
    "n_jobs": 1,
    "verbose": -1,
}

IntArray = np.ndarray[Any, np.dtype[np.int64]]


def expanding_splits(n: int, folds: int, min_train: int) -> list[tuple[IntArray, IntArray]]:
    """``folds`` (train, validation) index pairs over ``n`` time-ordered rows: expanding
    training windows, each validated on the block right after it."""
    if folds < 1 or min_train < 1:
        raise ValueError("folds and min_train must be at least 1")
    block = (n - min_train) // folds
    if block < 1:
        raise ValueError(
            f"too few rows for {folds} folds: {n} rows, {min_train} before the first fold"
        )
    out = []
    for k in range(folds):
        end = min_train + k * block
        stop = n if k == folds - 1 else end + block
        out.append((np.arange(0, end, dtype=np.int64), np.arange(end, stop, dtype=np.int64)))
    return out


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    names = sorted(grid)
    return [
        dict(zip(names, combo, strict=True))
        for combo in itertools.product(*(grid[n] for n in names))
    ]


@dataclass(frozen=True)
class GridSearch:
    grid: dict[str, list[Any]]
    folds: list[dict[str, int]]  # train_end, validation_start, validation_end (row numbers)
    results: list[dict[str, Any]]  # params, fold_mae, mean_mae
    naive_fold_mae: list[float]  # predicting no change, on the same folds
    best_params: dict[str, Any]
    best_mae: float

    def as_json(self) -> dict[str, Any]:
        return {
            "grid": self.grid,
            "cv": "expanding windows, validation after training, no shuffle",
            "folds": self.folds,
            "results": self.results,
            "naive_fold_mae": self.naive_fold_mae,
            "best_params": self.best_params,
            "best_mae": self.best_mae,
        }


def _regressor(params: Mapping[str, Any]) -> Any:
    import lightgbm as lgb

    return lgb.LGBMRegressor(**{**FIXED_PARAMS, **params})


def grid_search(
    x: pd.DataFrame, y: pd.Series, grid: Mapping[str, Sequence[Any]], folds: int, min_train: int
) -> GridSearch:
    splits = expanding_splits(len(x), folds, min_train)
    target = y.to_numpy(dtype=float)
    results: list[dict[str, Any]] = []
    for params in grid_points(grid):
        maes = []
        for train, valid in splits:
            model = _regressor(params).fit(x.iloc[train], target[train])
            pred = model.predict(x.iloc[valid])
            maes.append(float(np.mean(np.abs(target[valid] - pred))))
        results.append({"params": params, "fold_mae": maes, "mean_mae": float(np.mean(maes))})
    best = min(results, key=lambda r: r["mean_mae"])
    return GridSearch(
        grid={k: list(v) for k, v in grid.items()},
        folds=[
            {
                "train_end": int(t[-1]) + 1,
                "validation_start": int(v[0]),
                "validation_end": int(v[-1]) + 1,
            }
            for t, v in splits
        ],
        results=results,
        naive_fold_mae=[float(np.mean(np.abs(target[v]))) for _, v in splits],
        best_params=dict(best["params"]),
        best_mae=float(best["mean_mae"]),
    )


@dataclass
class ValuationFit:
    """A fitted booster with what its forecasts need: the feature order, the training
    ranges (for the fallback) and the importances."""

    booster: Any  # lightgbm.Booster
    features: tuple[str, ...]
    params: dict[str, Any]
    ranges: dict[str, tuple[float | None, float | None]]
    had_missing: dict[str, bool]
    importances: dict[str, float]  # share of the total gain, summing to 1
    n_train: int
    search: GridSearch | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def predict_returns(self, rows: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.float64]]:
        data = rows.loc[:, list(self.features)].to_numpy(dtype=float)
        return np.asarray(self.booster.predict(data, num_threads=1), dtype=np.float64)

    def fallback_reason(self, row: Mapping[str, Any] | pd.Series) -> str | None:
        """Why this feature row leaves the training range (then the EMA-30 stands in)."""
        out = []
        for name in self.features:
            value = float(row[name])
            low, high = self.ranges[name]
            if math.isnan(value):
                if not self.had_missing[name]:
                    out.append(f"{name} missing (never missing in training)")
            elif low is None or high is None:
                out.append(f"{name}={value:.6g} (always missing in training)")
            elif value < low or value > high:
                out.append(f"{name}={value:.6g} outside [{low:.6g}, {high:.6g}]")
        return "; ".join(out) if out else None

    def predict_prices(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Per row: the model's price, the served price (the EMA-30 where the row falls
        back), whether it fell back and why."""
        returns = self.predict_returns(rows)
        model_price = rows["close_prev"].to_numpy(dtype=float) * np.exp(returns)
        reasons = [self.fallback_reason(r) for _, r in rows.iterrows()]
        fallback = np.array([r is not None for r in reasons])
        price = np.where(fallback, rows["ema30"].to_numpy(dtype=float), model_price)
        return pd.DataFrame(
            {
                "model_price": model_price,
                "price": price,
                "fallback": fallback,
                "fallback_reason": reasons,
            },
            index=rows.index,
        )

    def save(self, path: str | Path) -> None:
        """LightGBM's own text format (no pickle)."""
        self.booster.save_model(str(path))


def load_booster(path: str | Path) -> Any:
    import lightgbm as lgb

    return lgb.Booster(model_file=str(path))


def trainable(table: pd.DataFrame) -> pd.DataFrame:
    """The rows with a known target and a previous close."""
    return table[table["target"].notna() & table["close_prev"].notna()]


def fit_valuation(
    table: pd.DataFrame,
    features: Sequence[str],
    *,
    grid: Mapping[str, Sequence[Any]] = DEFAULT_GRID,
    folds: int = 4,
    min_train: int = 250,
    params: Mapping[str, Any] | None = None,
) -> ValuationFit:
    """Fit on every trainable row of ``table`` (time-ordered). Without ``params``, a grid
    search with expanding-window CV picks them first."""
    rows = trainable(table)
    if len(rows) < min_train + folds:
        raise ValueError(f"too few rows to train: {len(rows)}, need {min_train + folds}")
    x = rows.loc[:, list(features)]
    y = rows["target"]
    search = None
    if params is None:
        search = grid_search(x, y, grid, folds, min_train)
        params = search.best_params
    model = _regressor(params).fit(x, y.to_numpy(dtype=float))
    booster = model.booster_
    gains = np.asarray(booster.feature_importance(importance_type="gain"), dtype=float)
    total = float(gains.sum())
    importances = {
        name: (float(g) / total if total > 0 else 0.0)
        for name, g in zip(features, gains, strict=True)
    }
    ranges: dict[str, tuple[float | None, float | None]] = {}
    for name in features:
        col = x[name].dropna()
        ranges[name] = (float(col.min()), float(col.max())) if len(col) else (None, None)
    return ValuationFit(
        booster=booster,
        features=tuple(features),
        params=dict(params),
        ranges=ranges,
        had_missing={name: bool(x[name].isna().any()) for name in features},
        importances=importances,
        n_train=len(rows),
        search=search,
    )

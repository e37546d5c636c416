"""The train stage: the published ``features`` -> a LightGBM volume model, evaluated on the
most recent period, its file and metrics under ``train/runs/<run_id>/``, then recorded in the
model registry (``ml.training_runs``, ``ml.model_versions``, the file in the models bucket)
under the symbol ``VOLUME``, and promoted if it beats the naive baseline.

The split is by time, never at random: the rows are ordered by date and the newest
``test_fraction`` of them (whole dates: every row of a date is on one side) is the test set;
the model trains only on the dates before. The naive baseline predicts a day's volume by its
``vol_moving_avg``. The training set is a uniform random sample of at most
``max_train_rows`` rows of the past period (sampling inside the past leaks nothing), so a
28-million-row dataset trains in seconds on two cores; the test set is scored whole.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from metalcast_bulk.schema import ADJ_CLOSE_ROLLING_MED, DATE, VOL_MOVING_AVG, VOLUME
from metalcast_bulk.stages import FEATURES
from metalcast_bulk.storage import Store
from metalcast_models.volume import ARTIFACT_NAME, VolumeModel
from metalcast_models.volume import FEATURES as MODEL_FEATURES

STAGE = "train"


@dataclass(frozen=True)
class TrainConfig:
    test_fraction: float = 0.2
    max_train_rows: int = 2_000_000
    num_boost_round: int = 60
    learning_rate: float = 0.1
    num_leaves: int = 7
    min_data_in_leaf: int = 100
    # L2: LightGBM's L1 objective re-fits every leaf by a weighted percentile, ~20x slower
    # here for a test MAE within 1% of it (docs/bulk.md).
    objective: str = "regression"
    # One thread: on a shared 2-core machine OpenMP's spinning threads cost 10x (docs/bulk.md).
    threads: int = 1
    seed: int = 7

    def lightgbm_params(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "num_threads": self.threads,
            "seed": self.seed,
            "deterministic": True,
            "verbosity": -1,
        }


@dataclass
class TrainResult:
    run_id: str
    features_run_id: str
    model_path: Path
    metrics: dict[str, Any]
    hyperparameters: dict[str, Any]
    train_start: date
    train_end: date
    test_start: date
    test_end: date
    n_train: int
    n_test: int
    timings: dict[str, float] = field(default_factory=dict)


def time_split(frame: pl.DataFrame, test_fraction: float) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """(past, recent, first test date): the newest ``test_fraction`` of rows, by whole dates."""
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be between 0 and 1")
    per_date = frame.group_by(DATE).len().sort(DATE)
    cumulative = per_date["len"].cum_sum()
    threshold = frame.height * (1 - test_fraction)
    index = int((cumulative < threshold).sum())
    index = min(max(index, 1), per_date.height - 1)
    if per_date.height < 2:
        raise ValueError("training needs rows on at least two dates")
    value = per_date[DATE][index]  # a date, or its YYYY-MM-DD text
    return (
        frame.filter(pl.col(DATE) < pl.lit(value)),
        frame.filter(pl.col(DATE) >= pl.lit(value)),
        str(value),
    )


def _metrics(
    y: np.ndarray[Any, Any], predicted: np.ndarray[Any, Any], naive: np.ndarray[Any, Any]
) -> dict[str, float]:
    err = predicted - y
    base = naive - y
    mae, mse = float(np.mean(np.abs(err))), float(np.mean(err**2))
    bmae, bmse = float(np.mean(np.abs(base))), float(np.mean(base**2))
    return {
        "mae": mae,
        "mse": mse,
        "rmse": mse**0.5,
        "baseline_mae": bmae,
        "baseline_mse": bmse,
        "mae_ratio": mae / bmae if bmae else float("nan"),
        "mse_ratio": mse / bmse if bmse else float("nan"),
    }


def fit(store: Store, run_id: str, work_dir: Path, cfg: TrainConfig) -> TrainResult:
    """Fit and evaluate; write the model and ``metrics.json`` locally and into the stage."""
    import lightgbm as lgb

    timings: dict[str, float] = {}
    t = time.perf_counter()
    features_run, files = store.current_files(FEATURES)
    columns = [DATE, VOLUME, VOL_MOVING_AVG, ADJ_CLOSE_ROLLING_MED]
    # File by file: rows with both features, dates as dates (4 bytes, not text), so that 28M
    # rows stay near 1 GB.
    frame = pl.concat(
        [
            store.read_parquet([f], columns=columns)
            .drop_nulls()
            .with_columns(pl.col(DATE).str.to_date("%Y-%m-%d"))
            for f in files
        ]
    )
    timings["load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    past, recent, first_test = time_split(frame, cfg.test_fraction)
    if past.height > cfg.max_train_rows:
        past = past.sample(cfg.max_train_rows, seed=cfg.seed)
    # The booster learns volume / vol_moving_avg, weighted by vol_moving_avg
    # (metalcast_models.volume).
    past = past.filter(pl.col(VOL_MOVING_AVG) > 0)
    x_train = past.select(list(MODEL_FEATURES)).to_numpy().astype(np.float64)
    scale = past[VOL_MOVING_AVG].to_numpy().astype(np.float64)
    ratio = past[VOLUME].to_numpy().astype(np.float64) / scale
    data = lgb.Dataset(
        x_train, ratio, weight=scale, feature_name=list(MODEL_FEATURES), free_raw_data=True
    )
    booster = lgb.train(cfg.lightgbm_params(), data, num_boost_round=cfg.num_boost_round)
    timings["fit_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model = VolumeModel(booster)
    x_test = recent.select(list(MODEL_FEATURES)).to_numpy().astype(np.float64)
    y_test = recent[VOLUME].to_numpy().astype(np.float64)
    predicted = np.maximum(np.rint(model.predict_many(x_test)), 0)  # served as integers
    metrics = _metrics(y_test, predicted, recent[VOL_MOVING_AVG].to_numpy())
    timings["evaluate_s"] = time.perf_counter() - t
    work_dir.mkdir(parents=True, exist_ok=True)
    model_path = work_dir / ARTIFACT_NAME
    model.save(model_path)
    result = TrainResult(
        run_id=run_id,
        features_run_id=features_run,
        model_path=model_path,
        metrics=metrics,
        hyperparameters={
            **cfg.lightgbm_params(),
            "num_boost_round": cfg.num_boost_round,
            "max_train_rows": cfg.max_train_rows,
            "test_fraction": cfg.test_fraction,
        },
        train_start=date.fromisoformat(str(past[DATE].min())),
        train_end=date.fromisoformat(str(past[DATE].max())),
        test_start=date.fromisoformat(first_test),
        test_end=date.fromisoformat(str(recent[DATE].max())),
        n_train=past.height,
        n_test=recent.height,
        timings=timings,
    )
    run_dir = store.run_dir(STAGE, run_id)
    store.write_bytes(f"{run_dir}/{ARTIFACT_NAME}", model_path.read_bytes())
    store.write_json(f"{run_dir}/metrics.json", summary(result))
    (work_dir / "metrics.json").write_text(json.dumps(summary(result), indent=2, sort_keys=True))
    return result


def summary(result: TrainResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "features_run_id": result.features_run_id,
        "metrics": result.metrics,
        "hyperparameters": result.hyperparameters,
        "split": {
            "rule": "time: the newest dates are the test set, never a random split",
            "train": [result.train_start.isoformat(), result.train_end.isoformat()],
            "test": [result.test_start.isoformat(), result.test_end.isoformat()],
            "n_train": result.n_train,
            "n_test": result.n_test,
        },
        "baseline": "vol_moving_avg as the prediction",
        "timings": result.timings,
    }


def utc_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)

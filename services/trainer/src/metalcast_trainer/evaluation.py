"""Backtest and score candidates exactly as the trainer does, without I/O: the one place the
trainer's settings turn into backtest calls (the runner and the benchmarks use it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from metalcast_models import FitResult, SavedArtifact, check_artifact, save_forecaster
from metalcast_models.backtest import (
    BacktestRun,
    CacheKey,
    Candidate,
    OriginForecast,
    Score,
    Series,
    run_backtest,
    score,
)
from metalcast_models.families import get_family
from metalcast_models.fitting import fit_series
from metalcast_trainer.config import TrainerSection


def backtest_and_score(
    cfg: TrainerSection,
    candidates: Sequence[Candidate],
    series: Series,
    cache: Mapping[CacheKey, OriginForecast] | None = None,
) -> tuple[BacktestRun, dict[str, Score]]:
    """Forecast at every origin (cached ones reused) and score each candidate; no scores
    when the series has no origin yet."""
    bt = run_backtest(
        candidates,
        series,
        origins=cfg.backtest_origins,
        horizon=cfg.backtest_horizon,
        cache=cache,
    )
    if not series.origins(cfg.x_size, cfg.backtest_origins):
        return bt, {}
    scores = {
        c.key: score(
            c,
            series,
            bt.forecasts[c.key],
            horizon=cfg.backtest_horizon,
            select_steps=cfg.select_steps,
            min_calibration=cfg.min_calibration,
            calibration_window=cfg.backtest_origins,
        )
        for c in candidates
    }
    return bt, scores


def fit_and_save(
    ticker: str,
    observed: pd.Series,
    x_size: int,
    family: str,
    hyperparameters: dict[str, Any],
    work: Path,
) -> tuple[FitResult, SavedArtifact | None, str | None, str]:
    """Fit, save and check the file reloads and predicts, in one call a process pool can run:
    the result (without its forecaster), the saved file, the check's problem (``None``: it
    passed) and the forecaster's class name."""
    result = fit_series(ticker, observed, x_size, get_family(family), hyperparameters)
    if not result.ok:
        return dataclasses.replace(result, forecaster=None), None, None, ""
    model_class = type(result.forecaster).__name__
    saved = save_forecaster(result.forecaster, work, result.ticker)
    problem = check_artifact(saved.path, expected_sha256=saved.sha256)
    return dataclasses.replace(result, forecaster=None), saved, problem, model_class

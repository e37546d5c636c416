"""Backtest and score candidates exactly as the trainer does, without I/O: the one place the
trainer's settings turn into backtest calls (the runner and the benchmarks use it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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

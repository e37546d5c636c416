"""Backtest and score candidates exactly as the trainer does, without I/O: the one place the
trainer's settings turn into backtest calls (the runner and the benchmarks use it); and the
whole CPU side of training a batch of instruments in one call a process pool can run
(:func:`evaluate_instruments`): backtest, champion/challenger, fit, save and reload-check."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from metalcast_models import FitResult, SavedArtifact, check_artifact, save_forecaster
from metalcast_models.backtest import (
    BacktestRun,
    CacheKey,
    Candidate,
    Decision,
    OriginForecast,
    Rules,
    Score,
    Series,
    decide,
    run_backtest,
    score,
)
from metalcast_models.families import get_family
from metalcast_models.fitting import fit_series
from metalcast_models.registry import VersionInfo
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
    fam = get_family(family)
    result = fit_series(ticker, observed, x_size, fam, hyperparameters)
    if not result.ok:
        return dataclasses.replace(result, forecaster=None), None, None, ""
    model_class = type(result.forecaster).__name__
    saved = save_forecaster(result.forecaster, work, result.ticker)
    # The reloaded forecaster predicts through its family's one-step path: the fit above
    # checked that path gives a finite forecast on the same fitted state.
    problem = check_artifact(saved.path, expected_sha256=saved.sha256, one_step=fam.forecast_one)
    return dataclasses.replace(result, forecaster=None), saved, problem, model_class


def champion_of(info: VersionInfo | None, candidates: Sequence[Candidate]) -> Candidate | None:
    """The production version's configuration: one of ``candidates``, or (a configuration
    no longer among them still defends its place) rebuilt from the version; ``None`` when
    there is no production version or its family is gone."""
    if info is None:
        return None
    for cand in candidates:
        if info.candidate_key == cand.key:
            return cand
    try:
        family = get_family(info.family)
        return Candidate(
            info.candidate or info.family,
            family.name,
            family.resolve(info.hyperparameters),
            info.n_observations,
        )
    except ValueError:
        return None


def choose(
    candidates: Sequence[Candidate],
    scores: Mapping[str, Score],
    champion: Candidate | None,
    rules: Rules,
    pinned: str | None,
    n_values: int,
    x_size: int,
) -> Decision:
    """Champion/challenger on the scores; without scores (too little history for an origin)
    the champion is refitted, or the first candidate becomes the first model."""
    if scores:
        return decide(candidates, scores, champion, rules=rules, pinned=pinned)
    first = candidates[0] if champion is None else champion
    return Decision(
        "pinned" if pinned else ("first" if champion is None else "refit"),
        first,
        first,
        pinned is None,
        f"no backtest yet ({n_values} observed values, the first origin needs "
        f"{x_size + 1}): {first.name}" + (f"; pinned by {pinned}" if pinned else ""),
    )


@dataclasses.dataclass(frozen=True)
class InstrumentJob:
    """Everything one instrument's training needs that is not CPU work: its series, its
    plan, its production configuration and pin, the cached backtest forecasts, and which
    configurations already have a live version fitted on this very window."""

    symbol: str
    observed: pd.Series
    cfg: TrainerSection
    x_size: int
    candidates: tuple[Candidate, ...]
    rules: Rules
    champion: Candidate | None
    pinned: str | None
    cache: Mapping[CacheKey, OriginForecast]
    fitted_keys: frozenset[str]

    @property
    def scored(self) -> list[Candidate]:
        """The candidates and the champion's configuration, backtested on the same origins."""
        scored = list(self.candidates)
        if self.champion is not None and self.champion.key not in {c.key for c in scored}:
            scored.append(self.champion)
        return scored


@dataclasses.dataclass(frozen=True)
class InstrumentOutcome:
    """What :func:`evaluate_instrument` found: the backtest (new forecasts for the cache,
    scores), the decision, and the fit unless a live version already fits the chosen
    configuration on this window (``fit`` None). ``error``: it raised (nothing else set)."""

    symbol: str
    decision: Decision | None = None
    # Per candidate key: (name, MASE, the score as JSON text); and the chosen one's calibration.
    backtests: dict[str, tuple[str, float | None, str]] = dataclasses.field(default_factory=dict)
    calibration: dict[str, Any] = dataclasses.field(default_factory=dict)
    new_cache: dict[str, list[OriginForecast]] = dataclasses.field(default_factory=dict)
    origins_fitted: int = 0
    origins_reused: int = 0
    backtest_s: float = 0.0
    fit: FitResult | None = None
    saved: SavedArtifact | None = None
    problem: str | None = None
    model_class: str = ""
    fit_s: float = 0.0
    error: str | None = None


def evaluate_instrument(job: InstrumentJob, work: Path) -> InstrumentOutcome:
    """Backtest, decide and (unless already fitted) fit, save and reload-check one
    instrument. Never raises: an exception is the outcome's ``error``."""
    try:
        observed = job.observed
        values = observed.to_numpy(dtype=float)
        stamps = [ts.to_pydatetime() for ts in pd.DatetimeIndex(observed.index)]
        series = Series(values, stamps)
        began = time.perf_counter()
        bt, scores = backtest_and_score(job.cfg, job.scored, series, job.cache)
        backtest_s = time.perf_counter() - began
        decision = choose(
            job.candidates,
            scores,
            job.champion,
            job.rules,
            job.pinned,
            len(values),
            job.x_size,
        )
        chosen = scores.get(decision.chosen.key)
        outcome = InstrumentOutcome(
            job.symbol,
            decision,
            {
                key: (sc.candidate["name"], sc.summary.get("mase"), sc.json_text())
                for key, sc in scores.items()
            },
            dict(chosen.calibration) if chosen is not None else {},
            bt.new,
            bt.fitted,
            bt.reused,
            backtest_s,
        )
        if decision.chosen.key in job.fitted_keys:
            return outcome
        began = time.perf_counter()
        fit, saved, problem, model_class = fit_and_save(
            job.symbol,
            observed,
            job.x_size,
            decision.chosen.family,
            dict(decision.chosen.hyperparameters),
            work,
        )
        return dataclasses.replace(
            outcome,
            fit=fit,
            saved=saved,
            problem=problem,
            model_class=model_class,
            fit_s=time.perf_counter() - began,
        )
    except Exception as exc:  # one instrument's failure never stops the others
        return InstrumentOutcome(job.symbol, error=f"{type(exc).__name__}: {exc}")


def evaluate_instruments(jobs: Sequence[InstrumentJob], work: Path) -> list[InstrumentOutcome]:
    """:func:`evaluate_instrument` for each job, in one call (one trip to a pool worker)."""
    return [evaluate_instrument(job, work) for job in jobs]

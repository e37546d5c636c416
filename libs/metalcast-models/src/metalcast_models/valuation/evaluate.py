"""One valuation run on daily gold: point-in-time features, the LightGBM candidate's
walk-forward backtest beside naive and ARIMA on the same origins, the champion/challenger
decision (:func:`metalcast_models.backtest.decide`, the rules every model obeys), and the
final fit with its grid search, fitted values and the next day's forecast.

Walk-forward backtest of the LightGBM candidate: the grid search runs once on the rows known
at the first origin; the booster is refitted with those parameters every ``refit_every``
origins on the rows known at that origin (their targets dated up to it), and forecasts each
origin's next close from that next day's point-in-time row. Naive and ARIMA are refitted at
every origin on the window of ``x_size`` closes ending there, as the trainer does.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

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
    make_candidate,
    run_backtest,
    score,
    window_hash,
    window_scale,
)
from metalcast_models.fitting import jsonable
from metalcast_models.valuation.features import PointInTime, point_in_time_features
from metalcast_models.valuation.model import (
    DEFAULT_GRID,
    FAMILY,
    FIXED_PARAMS,
    ValuationFit,
    fit_valuation,
    trainable,
)


@dataclass(frozen=True)
class ValuationConfig:
    x_size: int = 60  # naive/ARIMA window (daily closes); also the MASE scale's window
    origins: int = 250  # backtest origins (the last ones)
    refit_every: int = 21  # LightGBM refits in the backtest: every ~month of origins
    folds: int = 4
    min_train: int = 250  # rows before the first CV fold
    grid: Mapping[str, Sequence[Any]] = field(default_factory=lambda: dict(DEFAULT_GRID))
    baselines: tuple[str, ...] = ("naive", "arima")

    def gbm_candidate(self) -> Candidate:
        hp = {
            "grid": {k: list(v) for k, v in self.grid.items()},
            **FIXED_PARAMS,
            "folds": self.folds,
            "min_train": self.min_train,
            "refit_every": self.refit_every,
        }
        return Candidate("lightgbm", FAMILY, jsonable(hp), self.x_size)

    def candidates(self) -> list[Candidate]:
        return [make_candidate(f, self.x_size) for f in self.baselines] + [self.gbm_candidate()]


@dataclass
class ValuationResult:
    candidates: list[Candidate]
    scores: dict[str, Score]
    decision: Decision
    fit: ValuationFit  # the final fit on every row
    table: PointInTime
    series: Series
    backtest: pd.DataFrame  # per origin: target date, actual, price, model_price, fallback...
    fitted: pd.DataFrame  # per row: actual, fitted (in-sample model price)
    forecast: dict[str, Any]  # the next day's: date, price, model_price, fallback, reason
    baseline_run: BacktestRun

    def summary(self) -> dict[str, Any]:
        """Per candidate name: MASE, MAE ratio to naive, MAE, origins, failures."""
        out: dict[str, Any] = {}
        for cand in self.candidates:
            s = self.scores.get(cand.key)
            if s is not None:
                out[cand.name] = {
                    "mase": s.summary.get("mase"),
                    "mae_ratio": s.summary.get("mae_ratio"),
                    "mae": s.summary.get("mae"),
                    "origins": s.origins,
                    "failures": s.failures,
                }
        bt = self.backtest
        if len(bt):
            out["lightgbm"]["fallbacks"] = int(bt["fallback"].sum())
        return out


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


def gold_series(closes: pd.Series) -> Series:
    closes = closes.dropna().sort_index()
    stamps = [_midnight(pd.Timestamp(d).date()) for d in closes.index]
    return Series(closes.to_numpy(dtype=float), stamps)


def gbm_backtest(
    table: pd.DataFrame,
    features: Sequence[str],
    series: Series,
    indices: Sequence[int],
    cfg: ValuationConfig,
    params: Mapping[str, Any],
) -> tuple[list[OriginForecast], pd.DataFrame]:
    """The LightGBM candidate at each origin (see the module docstring)."""
    forecasts: list[OriginForecast] = []
    records = []
    fit: ValuationFit | None = None
    x = cfg.x_size
    for n, i in enumerate(indices):
        origin_day = series.stamps[i].date()
        if fit is None or n % cfg.refit_every == 0:
            known = table[table.index <= origin_day]
            fit = fit_valuation(
                known, features, folds=cfg.folds, min_train=cfg.min_train, params=params
            )
        target_day = series.stamps[i + 1].date()
        row = table.loc[[target_day]]
        priced = fit.predict_prices(row).iloc[0]
        window = series.values[i - x + 1 : i + 1]
        forecasts.append(
            OriginForecast(
                series.stamps[i],
                window_hash(window),
                window_scale(window),
                np.array([float(priced["price"])]),
                None,
            )
        )
        records.append(
            {
                "date": target_day,
                "origin": origin_day,
                "actual": float(series.values[i + 1]),
                "price": float(priced["price"]),
                "model_price": float(priced["model_price"]),
                "ema30": float(row["ema30"].iloc[0]),
                "naive": float(series.values[i]),
                "fallback": bool(priced["fallback"]),
                "fallback_reason": priced["fallback_reason"],
            }
        )
    return forecasts, pd.DataFrame(records)


def evaluate(
    closes: pd.Series,
    vintages: pd.DataFrame,
    lags: Mapping[str, int],
    cfg: ValuationConfig = ValuationConfig(),
    *,
    champion: Candidate | None = None,
    pinned: str | None = None,
    rules: Rules | None = None,
    cache: Mapping[CacheKey, OriginForecast] | None = None,
    levels: Collection[str] | None = None,
) -> ValuationResult:
    """``closes``: daily gold closes indexed by date; ``levels``: the macro series whose
    level is a feature (the others: their change only). Raises ``ValueError`` with the reason
    when there is too little data."""
    closes = closes.dropna().sort_index()
    days = [pd.Timestamp(d).date() for d in closes.index]
    if not days:
        raise ValueError("no daily gold closes")
    next_day = days[-1] + timedelta(days=1)
    pit = point_in_time_features(vintages, lags, closes, [*days, next_day], levels=levels)
    table = pit.frame
    series = gold_series(closes)
    indices = series.origins(cfg.x_size, cfg.origins)
    first_rows = len(trainable(table[table.index <= days[indices[0]]])) if indices else 0
    need = cfg.min_train + cfg.folds
    if not indices or first_rows < need:
        raise ValueError(
            f"too few daily gold closes: {len(days)}; the backtest's first origin needs "
            f"{need} trainable rows before it (has {first_rows}) and {cfg.origins} origins"
        )
    candidates = cfg.candidates()
    gbm = candidates[-1]
    first_known = table[table.index <= days[indices[0]]]
    search = fit_valuation(
        first_known, pit.features, grid=cfg.grid, folds=cfg.folds, min_train=cfg.min_train
    ).search
    assert search is not None
    gbm_forecasts, backtest = gbm_backtest(
        table, pit.features, series, indices, cfg, search.best_params
    )
    others = [c for c in candidates if c.key != gbm.key]
    known = {c.key for c in candidates}
    if champion is not None and champion.key not in known and champion.family != FAMILY:
        others.append(champion)
    run = run_backtest(others, series, origins=cfg.origins, horizon=1, cache=cache)
    scores: dict[str, Score] = {
        c.key: score(c, series, run.forecasts[c.key], horizon=1) for c in others
    }
    scores[gbm.key] = score(gbm, series, gbm_forecasts, horizon=1)
    if champion is not None and champion.family == FAMILY and champion.key != gbm.key:
        champion = None  # an older LightGBM configuration: the current one stands for it
    decision = decide(candidates, scores, champion, rules=rules or Rules(), pinned=pinned)

    final = fit_valuation(
        table, pit.features, grid=cfg.grid, folds=cfg.folds, min_train=cfg.min_train
    )
    final.extra["backtest_search"] = search.as_json()
    rows = trainable(table)
    in_sample = final.predict_prices(rows)
    fitted = pd.DataFrame(
        {"actual": rows["close"], "fitted": in_sample["model_price"]}, index=rows.index
    )
    nxt = final.predict_prices(table.loc[[next_day]]).iloc[0]
    forecast = {
        "date": next_day,
        "price": float(nxt["price"]),
        "model_price": float(nxt["model_price"]),
        "ema30": float(table["ema30"].iloc[-1]),
        "fallback": bool(nxt["fallback"]),
        "fallback_reason": nxt["fallback_reason"],
    }
    return ValuationResult(
        candidates=candidates,
        scores=scores,
        decision=decision,
        fit=final,
        table=pit,
        series=series,
        backtest=backtest,
        fitted=fitted,
        forecast=forecast,
        baseline_run=run,
    )

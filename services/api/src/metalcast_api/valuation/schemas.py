"""HTTP shapes of the gold valuation."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel


class ValuationModelRead(BaseModel):
    symbol: str
    version: int
    run_id: int
    created_at: datetime
    family: str
    params: dict[str, Any]  # the grid search's best parameters
    in_production: bool  # the XAU-VAL pointer is on this LightGBM version
    decision: str  # why the pointer is where it is
    n_train: int
    window_start: datetime
    window_end: datetime


class ValuationProductionRead(BaseModel):
    version: int
    candidate: str | None
    family: str


class ValuationPointRead(BaseModel):
    date: date
    actual: float | None
    fitted: float
    residual: float | None  # actual - fitted: > 0 over-valued against the model


class ValuationBacktestPointRead(BaseModel):
    date: date
    actual: float | None
    predicted: float  # what was served: the model's, or the EMA-30 where it fell back
    model: float | None  # the booster's own
    naive: float | None
    fallback: bool
    fallback_reason: str | None


class ValuationFeatureRead(BaseModel):
    name: str
    importance: float  # share of the total gain


class ValuationLatestRead(BaseModel):
    date: date
    actual: float | None
    fitted: float
    residual: float | None
    residual_pct: float | None
    valuation: Literal["over-valued", "under-valued", "fair"] | None


class ValuationForecastRead(BaseModel):
    date: date
    price: float
    model_price: float
    ema30: float
    fallback: bool
    fallback_reason: str | None


class ValuationRead(BaseModel):
    gold_symbol: str
    model: ValuationModelRead
    production: ValuationProductionRead | None
    latest: ValuationLatestRead
    forecast: ValuationForecastRead
    top_features: list[ValuationFeatureRead]
    backtest: dict[str, dict[str, Any]]  # per candidate: mase, mae_ratio (vs naive), mae, ...
    search: dict[str, Any]  # grid, folds, best_params, best_mae, results
    fitted: list[ValuationPointRead]
    backtest_points: list[ValuationBacktestPointRead]

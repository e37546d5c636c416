"""/v1/valuation/gold: gold's actual price beside the valuation model's fitted values and
its walk-forward forecasts, the residual (over- or under-valued against the model), the top
features with their importances, and the backtest against naive and ARIMA."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from metalcast_api.deps import ConnDep
from metalcast_api.errors import not_found, responses, unavailable
from metalcast_api.valuation import service
from metalcast_api.valuation.schemas import (
    ValuationBacktestPointRead,
    ValuationFeatureRead,
    ValuationForecastRead,
    ValuationLatestRead,
    ValuationModelRead,
    ValuationPointRead,
    ValuationProductionRead,
    ValuationRead,
)

router = APIRouter(prefix="/v1/valuation", tags=["valuation"])
FAIR_PCT = 0.25  # |residual| below this percentage of the fitted value: "fair"


def _residual(actual: float | None, fitted: float) -> float | None:
    return None if actual is None else actual - fitted


@router.get(
    "/gold",
    response_model=ValuationRead,
    responses=responses(404, 503),
    summary="The gold valuation model: actual vs fitted, residual, features, backtest",
)
async def gold(
    conn: ConnDep,
    days: Annotated[int, Query(ge=1, le=5000, description="fitted values: the last days")] = 250,
    top: Annotated[int, Query(ge=1, le=100, description="how many features")] = 10,
) -> ValuationRead:
    fit = await service.newest_fit(conn)
    if fit is None:
        not_found(
            "no gold valuation model yet: it trains when daily gold and macro series are "
            "loaded (docs/valuation.md)"
        )
    fitted_rows = await service.points(conn, fit["id"], "fitted", days)
    backtest_rows = await service.points(conn, fit["id"], "backtest", 5000)
    if not fitted_rows:
        unavailable(f"valuation model v{fit['version']} has no fitted values recorded")
    prod = await service.production(conn)
    fitted = [
        ValuationPointRead(
            date=r["date"],
            actual=r["actual"],
            fitted=r["value"],
            residual=_residual(r["actual"], r["value"]),
        )
        for r in fitted_rows
    ]
    last = fitted[-1]
    pct = None if last.residual is None else 100 * last.residual / last.fitted
    verdict = None
    if pct is not None:
        verdict = "fair" if abs(pct) < FAIR_PCT else ("over-valued" if pct > 0 else "under-valued")
    importances = sorted(fit["importances"].items(), key=lambda kv: kv[1], reverse=True)
    search = {k: v for k, v in fit["search"].items() if k != "backtest_search"}
    return ValuationRead(
        gold_symbol="XAU",
        model=ValuationModelRead(
            symbol=fit["symbol"],
            version=fit["version"],
            run_id=fit["run_id"],
            created_at=fit["created_at"],
            family=fit["family"],
            params=fit["hyperparameters"],
            in_production=fit["in_production"],
            decision=fit["decision"],
            n_train=fit["n_observations"],
            window_start=fit["window_start"],
            window_end=fit["window_end"],
        ),
        production=None if prod is None else ValuationProductionRead(**prod),
        latest=ValuationLatestRead(
            date=last.date,
            actual=last.actual,
            fitted=last.fitted,
            residual=last.residual,
            residual_pct=pct,
            valuation=verdict,
        ),
        forecast=ValuationForecastRead(**fit["forecast"]),
        top_features=[ValuationFeatureRead(name=k, importance=v) for k, v in importances[:top]],
        backtest=fit["backtest"],
        search=search,
        fitted=fitted,
        backtest_points=[
            ValuationBacktestPointRead(
                date=r["date"],
                actual=r["actual"],
                predicted=r["value"],
                model=r["model_value"],
                naive=r["naive"],
                fallback=r["fallback"],
                fallback_reason=r["fallback_reason"],
            )
            for r in backtest_rows
        ],
    )

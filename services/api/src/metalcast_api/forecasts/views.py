"""/v1/forecasts/{symbol}: hourly steps with 80% and 95% intervals from the production model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response

from metalcast_api.deps import ForecastsDep, MetalDep, SettingsDep
from metalcast_api.errors import Instant, as_utc, conflict, responses, unavailable, unprocessable
from metalcast_api.forecasts.schemas import ForecastModel, ForecastRead
from metalcast_api.forecasts.service import StepsProblem, check_choice, stale_hours, steps_for
from metalcast_api.resources.forecasts import ModelUnavailable

router = APIRouter(prefix="/v1/forecasts", tags=["forecasts"])


@router.get(
    "/{symbol}",
    response_model=ForecastRead,
    responses=responses(404, 409, 503),
    summary="Forecast of one metal: `horizon` hours or `until` a date-time",
)
async def forecast(
    metal: MetalDep,
    forecasts: ForecastsDep,
    settings: SettingsDep,
    horizon: Annotated[
        int | None,
        Query(
            ge=1,
            le=1_000_000,
            description="Steps after the model's cutoff, 1..`api.max_horizon_h` (default 168)",
            examples=[24],
        ),
    ] = None,
    until: Annotated[
        Instant | None,
        Query(
            description="A future instant (ISO-8601, naive = UTC): every hourly step up to it",
            examples=["2026-01-16T12:00:00Z"],
        ),
    ] = None,
) -> Response:
    """Exactly one of `horizon` and `until`. Each step carries the point forecast and its
    80% and 95% prediction intervals; `model` names the production version that produced
    them, `interval_method` how the intervals were made (calibrated on the version's
    backtest, or the model's own) and `interval_coverage` what the calibrated intervals
    covered in that backtest. 409 while the metal has no production model."""
    now = datetime.now(UTC)
    if until is not None:
        until = as_utc(until, "query", "until")
    try:
        check_choice(horizon, until)
        if horizon is not None:
            steps_for(now, now, settings.api.max_horizon_h, horizon=horizon)
        elif until is not None and until <= now:
            steps_for(now, now, settings.api.max_horizon_h, until=until)
    except StepsProblem as exc:
        unprocessable("query", exc.field, str(exc))

    pointer = (await forecasts.pointers.get())[metal.symbol]
    if pointer.model_version_id is None:
        conflict(f"no production model for {metal.symbol} yet: the trainer has not promoted one")
    try:
        model, cached = await forecasts.get(metal.symbol, pointer.model_version_id)
    except ModelUnavailable as exc:
        unavailable(f"the production model of {metal.symbol} is unavailable: {exc}")
    try:
        n = steps_for(model.cutoff, now, forecasts.max_horizon_h, horizon=horizon, until=until)
    except StepsProblem as exc:
        unprocessable("query", exc.field, str(exc))
    info = model.info
    # Every part was validated when the model was loaded: construct, then serialise once.
    body = ForecastRead.model_construct(
        symbol=metal.symbol,
        model=ForecastModel.model_construct(
            model_version_id=info.id,
            version=info.version,
            family=info.family,
            candidate=info.candidate,
            trained_at=info.created_at,
            window_start=info.window_start,
            window_end=info.window_end,
        ),
        cutoff=model.cutoff,
        last_observation=pointer.last_observation,
        stale_hours=stale_hours(model.cutoff, pointer.last_observation),
        until=until,
        horizon=n,
        cached=cached,
        generated_at=now,
        interval_method=model.interval_method,
        interval_coverage=model.interval_coverage,
        steps=list(model.steps[:n]),
    )
    return Response(body.model_dump_json(), media_type="application/json")

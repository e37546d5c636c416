"""/v1/forecasts/{symbol}: hourly steps with 80% and 95% intervals from the production model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response

from metalcast_api.deps import ForecastsDep, SettingsDep
from metalcast_api.errors import (
    Instant,
    as_utc,
    conflict,
    not_found,
    responses,
    unavailable,
    unprocessable,
)
from metalcast_api.forecasts.schemas import ForecastModel, ForecastRead
from metalcast_api.forecasts.service import (
    HOUR,
    StepsProblem,
    check_choice,
    stale_hours,
    steps_for,
)
from metalcast_api.resources.forecasts import ModelUnavailable
from metalcast_core import METAL_SYMBOLS, METALS_BY_SYMBOL
from metalcast_models.sessions import step_calendar

router = APIRouter(prefix="/v1/forecasts", tags=["forecasts"])


@router.get(
    "/{symbol}",
    response_model=ForecastRead,
    responses=responses(404, 409, 503),
    summary="Forecast of one instrument: `horizon` steps or `until` a date-time",
)
async def forecast(
    symbol: str,
    forecasts: ForecastsDep,
    settings: SettingsDep,
    horizon: Annotated[
        int | None,
        Query(
            ge=1,
            le=1_000_000,
            description="Steps after the model's cutoff, in the instrument's cadence: hours "
            "(metals: 1..`api.max_horizon_h`, default 168) or days",
            examples=[24],
        ),
    ] = None,
    until: Annotated[
        Instant | None,
        Query(
            description="A future instant (ISO-8601, naive = UTC): every step (hour or day) "
            "up to it",
            examples=["2026-01-16T12:00:00Z"],
        ),
    ] = None,
) -> Response:
    """Exactly one of `horizon` and `until`. Each step carries the point forecast and its
    80% and 95% prediction intervals; `model` names the production version that produced
    them, `interval_method` how the intervals were made (calibrated on the version's
    backtest, or the model's own) and `interval_coverage` what the calibrated intervals
    covered in that backtest. The metals step in hours; any other catalogued instrument in
    its cadence (hours, or days for daily bars: `cadence`): stocks and ETFs step in NYSE
    trading days (weekends and NYSE holidays skipped), crypto in calendar days. 404 naming the known
    instruments; 409 while the instrument has no production model."""
    now = datetime.now(UTC)
    if until is not None:
        until = as_utc(until, "query", "until")
    wanted = symbol.upper()
    step, max_steps, cadence = HOUR, settings.api.max_horizon_h, "hourly"
    calendar: str | None = None
    if wanted not in METALS_BY_SYMBOL:
        catalogue = await forecasts.catalogue()
        inst = catalogue.get(wanted)
        if inst is None:
            others = sorted(set(catalogue) - set(METAL_SYMBOLS))
            not_found(
                f"unknown symbol {symbol!r}; known symbols: {', '.join(METAL_SYMBOLS)}; "
                f"other instruments: {', '.join(others) or 'none'}"
            )
        cadence = inst.cadence
        step = timedelta(days=1) if cadence == "daily" else HOUR
        default = settings.api.max_horizon_days if cadence == "daily" else max_steps
        max_steps = (inst.model.horizon if inst.model else None) or default
        calendar = step_calendar(inst.kind, cadence)
        forecasts.configure(wanted, max_steps, step, calendar)
    try:
        check_choice(horizon, until)
        if horizon is not None:
            steps_for(now, now, max_steps, horizon=horizon, step=step, calendar=calendar)
        elif until is not None and until <= now:
            steps_for(now, now, max_steps, until=until, step=step, calendar=calendar)
    except StepsProblem as exc:
        unprocessable("query", exc.field, str(exc))

    if wanted in METALS_BY_SYMBOL:
        pointer = (await forecasts.pointers.get())[wanted]
    else:
        pointer = await forecasts.instrument_pointer(wanted, cadence)
    if pointer.model_version_id is None:
        conflict(f"no production model for {wanted} yet: the trainer has not promoted one")
    try:
        model, cached = await forecasts.get(wanted, pointer.model_version_id)
    except ModelUnavailable as exc:
        unavailable(f"the production model of {wanted} is unavailable: {exc}")
    try:
        n = steps_for(
            model.cutoff,
            now,
            max_steps,
            horizon=horizon,
            until=until,
            step=step,
            calendar=calendar,
        )
    except StepsProblem as exc:
        unprocessable("query", exc.field, str(exc))
    info = model.info
    # Every part was validated when the model was loaded: construct, then serialise once.
    body = ForecastRead.model_construct(
        symbol=wanted,
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
        cadence=cadence,
    )
    return Response(body.model_dump_json(), media_type="application/json")

"""/v1/instruments: the catalogue, one instrument, and its hourly or daily history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from metalcast_api.deps import ConnDep, SettingsDep
from metalcast_api.errors import Instant, as_utc, responses, unprocessable
from metalcast_api.instruments import service
from metalcast_api.instruments.schemas import (
    DailyBar,
    HourlyPoint,
    InstrumentHistoryRead,
    InstrumentRead,
)
from metalcast_core import Instrument

router = APIRouter(prefix="/v1/instruments", tags=["instruments"])


def _read(inst: Instrument) -> InstrumentRead:
    return InstrumentRead(
        symbol=inst.symbol,
        name=inst.name,
        kind=inst.kind,
        currency=inst.currency,
        unit=inst.unit,
        cadence=inst.cadence,
        providers=inst.providers,
        model=None if inst.model is None else inst.model.model_dump(mode="json"),
    )


@router.get("", response_model=list[InstrumentRead], summary="Every catalogued instrument")
async def list_instruments(
    conn: ConnDep,
    kind: Annotated[
        str | None, Query(description="Only this kind: metal, crypto, equity, etf, fx, macro")
    ] = None,
) -> list[InstrumentRead]:
    """The instrument catalogue (`ref.instruments`): what metalcast ingests, stores and
    trains; `metalcast instruments add` changes it without a redeploy."""
    return [_read(i) for i in await service.catalogue(conn) if kind in (None, i.kind)]


@router.get(
    "/{symbol}",
    response_model=InstrumentRead,
    responses=responses(404),
    summary="One catalogued instrument",
)
async def get_instrument(symbol: str, conn: ConnDep) -> InstrumentRead:
    return _read(await service.instrument_or_404(conn, symbol))


@router.get(
    "/{symbol}/history",
    response_model=InstrumentHistoryRead,
    responses=responses(404),
    summary="Hourly or daily history of one instrument",
)
async def instrument_history(
    symbol: str,
    conn: ConnDep,
    settings: SettingsDep,
    cadence: Annotated[
        Literal["hourly", "daily"] | None,
        Query(description="Default: the instrument's own cadence"),
    ] = None,
    start: Annotated[
        Instant | None,
        Query(alias="from", description="Range start (naive = UTC). Default: `to` minus 90 days"),
    ] = None,
    end: Annotated[
        Instant | None, Query(alias="to", description="Range end (excluded). Default: now")
    ] = None,
) -> InstrumentHistoryRead:
    """`hourly`: the last spot price of each UTC hour (`analytics.instrument_prices_hourly`).
    `daily`: one bar per day (`analytics.instrument_prices_daily`: the provider's bars, or
    the day's ticks: first, highest, lowest, last)."""
    inst = await service.instrument_or_404(conn, symbol)
    end = as_utc(end, "query", "to") if end is not None else datetime.now(UTC)
    start = as_utc(start, "query", "from") if start is not None else end - timedelta(days=90)
    if start >= end:
        unprocessable("query", "from", "`from` must be before `to`", start.isoformat())
    max_days = settings.api.max_range_days * (10 if (cadence or inst.cadence) == "daily" else 1)
    if end - start > timedelta(days=max_days):
        unprocessable("query", "to", f"the range is longer than {max_days} days; ask in parts")
    chosen = cadence or inst.cadence
    body = InstrumentHistoryRead(
        symbol=inst.symbol, cadence=chosen, currency=inst.currency, start=start, end=end
    )
    if chosen == "hourly":
        rows = await service.hourly(conn, inst.symbol, start, end)
        body.hourly = [HourlyPoint(ts=r["ts"], price=r["price"]) for r in rows]
    else:
        rows = await service.daily(conn, inst.symbol, start, end)
        body.daily = [DailyBar(**dict(r)) for r in rows]
    return body

"""/v1/analytics: monthly averages and ranges, drawdowns and rallies, returns and volatility,
correlations, for any catalogued instruments (docs/instruments.md lists each question)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from metalcast_api.analytics import service
from metalcast_api.analytics.schemas import CorrelationRow, MonthlyRow, MoveRow, ReturnRow
from metalcast_api.deps import ConnDep
from metalcast_api.errors import not_found, responses, unprocessable
from metalcast_core import fetch_catalogue

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])

Symbols = Annotated[
    str,
    Query(
        description="Comma-separated catalogued symbols, e.g. `BTC,SPY,XAU`",
        examples=["BTC,ETH,SPY"],
    ),
]
FromDay = Annotated[
    date | None, Query(alias="from", description="First day. Default: 5 years before `to`")
]
ToDay = Annotated[date | None, Query(alias="to", description="Day after the last. Default: today")]
Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many rows")]


async def _symbols(conn: ConnDep, text: str) -> list[str]:
    wanted = [s.strip().upper() for s in text.split(",") if s.strip()]
    if not wanted:
        unprocessable("query", "symbols", "name at least one symbol")
    known = {i.symbol for i in await fetch_catalogue(conn)}
    unknown = [s for s in wanted if s not in known]
    if unknown:
        not_found(
            f"unknown instrument(s) {', '.join(unknown)}; known instruments: "
            f"{', '.join(sorted(known))}"
        )
    return list(dict.fromkeys(wanted))


EARLIEST_DAY = date(1970, 1, 1)
LATEST_DAY = date(2200, 1, 1)


def _period(start: date | None, end: date | None) -> tuple[date, date]:
    for name, day in (("from", start), ("to", end)):
        if day is not None and not EARLIEST_DAY <= day < LATEST_DAY:
            unprocessable("query", name, "must lie between 1970 and 2200", day.isoformat())
    end = end or (datetime.now(UTC).date() + timedelta(days=1))
    start = start or max(EARLIEST_DAY, end - timedelta(days=5 * 365 + 1))
    if start >= end:
        unprocessable("query", "from", "`from` must be before `to`", start.isoformat())
    return start, end


@router.get(
    "/monthly",
    response_model=list[MonthlyRow],
    responses=responses(404),
    summary="Monthly average and range per instrument",
)
async def monthly(
    conn: ConnDep, symbols: Symbols, start: FromDay = None, end: ToDay = None
) -> list[MonthlyRow]:
    """What did each instrument average, and how far did it range, month by month?
    (`analytics.monthly_summary`, from the daily closes, highs and lows.)"""
    start, end = _period(start, end)
    rows = await service.monthly(conn, await _symbols(conn, symbols), start, end)
    return [MonthlyRow(**dict(r)) for r in rows]


@router.get(
    "/drawdowns",
    response_model=list[MoveRow],
    responses=responses(404),
    summary="The largest drawdowns",
)
async def drawdowns(
    conn: ConnDep, symbols: Symbols, start: FromDay = None, end: ToDay = None, limit: Limit = 10
) -> list[MoveRow]:
    """What were the largest falls from a peak? One row per peak (the lowest close before a
    higher peak), largest fall first (`analytics.drawdowns`)."""
    start, end = _period(start, end)
    rows = await service.moves(conn, "drawdowns", await _symbols(conn, symbols), start, end, limit)
    return [MoveRow(**dict(r)) for r in rows]


@router.get(
    "/rallies",
    response_model=list[MoveRow],
    responses=responses(404),
    summary="The largest rallies",
)
async def rallies(
    conn: ConnDep, symbols: Symbols, start: FromDay = None, end: ToDay = None, limit: Limit = 10
) -> list[MoveRow]:
    """What were the largest rises from a low? One row per low (the highest close before a
    lower low), largest rise first (`analytics.rallies`)."""
    start, end = _period(start, end)
    rows = await service.moves(conn, "rallies", await _symbols(conn, symbols), start, end, limit)
    return [MoveRow(**dict(r)) for r in rows]


@router.get(
    "/returns",
    response_model=list[ReturnRow],
    responses=responses(404),
    summary="Day-over-day returns and volatility",
)
async def returns(
    conn: ConnDep, symbols: Symbols, start: FromDay = None, end: ToDay = None
) -> list[ReturnRow]:
    """How much did each instrument move from one observed day to the next, and how volatile
    was it over its last 30 observations? (`analytics.daily_returns`)"""
    start, end = _period(start, end)
    rows = await service.returns(conn, await _symbols(conn, symbols), start, end)
    return [ReturnRow(**dict(r)) for r in rows]


@router.get(
    "/correlations",
    response_model=list[CorrelationRow],
    responses=responses(404),
    summary="Correlation of daily returns between instruments",
)
async def correlations(
    conn: ConnDep, symbols: Symbols, start: FromDay = None, end: ToDay = None
) -> list[CorrelationRow]:
    """Which instruments move together? The Pearson correlation of daily log returns of each
    pair, on the days both have one within the period (`analytics.return_correlations`)."""
    start, end = _period(start, end)
    rows = await service.correlations(conn, await _symbols(conn, symbols), start, end)
    return [CorrelationRow(**dict(r)) for r in rows]

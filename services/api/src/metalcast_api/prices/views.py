"""/v1/prices: latest prices, hourly history, the analytics rows, the training window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import TypeAdapter

from metalcast_api.deps import ConnDep, MetalDep, SettingsDep
from metalcast_api.errors import Instant, as_utc, responses, unprocessable
from metalcast_api.prices import service
from metalcast_api.prices.schemas import (
    AnalyticsRead,
    AnalyticsRow,
    HistoryRead,
    LatestPriceRead,
    PricePoint,
    TrainingWindowRead,
)
from metalcast_api.resources import Resources
from metalcast_core import METALS_BY_SYMBOL

router = APIRouter(prefix="/v1/prices", tags=["prices"])

FromQuery = Annotated[
    Instant | None,
    Query(
        alias="from",
        description="Range start, ISO-8601 (naive = UTC). Default: `to` minus 7 days.",
        examples=["2026-01-08T00:00:00Z"],
    ),
]
ToQuery = Annotated[
    Instant | None,
    Query(
        alias="to",
        description="Range end (excluded), ISO-8601 (naive = UTC). Default: now.",
        examples=["2026-01-15T00:00:00Z"],
    ),
]


def _range(
    start: datetime | None, end: datetime | None, max_days: int
) -> tuple[datetime, datetime]:
    end = as_utc(end, "query", "to") if end is not None else datetime.now(UTC)
    start = as_utc(start, "query", "from") if start is not None else end - timedelta(days=7)
    if start >= end:
        unprocessable("query", "from", "`from` must be before `to`", start.isoformat())
    if end - start > timedelta(days=max_days):
        unprocessable(
            "query", "to", f"the range is longer than {max_days} days; ask in parts", None
        )
    return start, end


_LATEST_LIST = TypeAdapter(list[LatestPriceRead])


@router.get("/latest", response_model=list[LatestPriceRead], summary="Latest price per symbol")
async def latest_prices(request: Request) -> Response:
    """The newest spot USD price of every known symbol that has one, with its age and source.
    Read from the database at most once per `api.latest_cache_s` (default 1 s); `age_seconds`
    is computed for each answer."""
    # The hot path: no dependency to solve (about 10% of this endpoint's time).
    res: Resources = request.app.state.api
    rows = res.latest.get()
    if rows is None:
        async with res.pool.acquire() as conn:
            rows = await service.latest(conn, res.settings.known_symbols)
        res.latest.put(rows)
    now = datetime.now(UTC)
    out = []
    for r in rows:
        metal = METALS_BY_SYMBOL.get(r["symbol"])
        # Built from trusted database rows: no second validation on the hot path.
        out.append(
            LatestPriceRead.model_construct(
                symbol=r["symbol"],
                name=metal.name if metal else None,
                price=r["price"],
                currency=r["currency"],
                observed_at=r["observed_at"],
                age_seconds=round((now - r["observed_at"]).total_seconds(), 3),
                source=r["source"],
            )
        )
    return Response(_LATEST_LIST.dump_json(out), media_type="application/json")


@router.get(
    "/{symbol}/history",
    response_model=HistoryRead,
    responses=responses(404),
    summary="Hourly history of one metal",
)
async def price_history(
    metal: MetalDep,
    conn: ConnDep,
    settings: SettingsDep,
    start: FromQuery = None,
    end: ToQuery = None,
) -> HistoryRead:
    """One value per UTC hour in [from, to): the hour's last spot USD price
    (`analytics.metal_prices`); hours without a value are left out."""
    start, end = _range(start, end, settings.api.max_range_days)
    rows = await service.history(conn, metal, start, end)
    return HistoryRead(
        symbol=metal.symbol,
        start=start,
        end=end,
        points=[PricePoint(ts=r["ts"], price=r["price"]) for r in rows],
    )


@router.get("/analytics", response_model=AnalyticsRead, summary="Wide hourly rows, all metals")
async def analytics_rows(
    conn: ConnDep, settings: SettingsDep, start: FromQuery = None, end: ToQuery = None
) -> AnalyticsRead:
    """Rows of `analytics.metal_prices` with `ts` in [from, to): one per hour, a column per
    metal, null where a metal had no spot USD tick that hour."""
    start, end = _range(start, end, settings.api.max_range_days)
    rows = await service.analytics(conn, start, end)
    return AnalyticsRead(start=start, end=end, rows=[AnalyticsRow(**dict(r)) for r in rows])


@router.get(
    "/training-window", response_model=TrainingWindowRead, summary="The current training window"
)
async def training_window(conn: ConnDep) -> TrainingWindowRead:
    """`ml.metal_prices_training`: the newest twelve hourly rows, oldest first."""
    rows = [AnalyticsRow(**dict(r)) for r in await service.training_window(conn)]
    return TrainingWindowRead(
        size=len(rows),
        first=rows[0].ts if rows else None,
        last=rows[-1].ts if rows else None,
        rows=rows,
    )

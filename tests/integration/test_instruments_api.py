"""The long views and the analyses, through the API on the real servers: prices stored as
the sink stores them (bars and ticks), answers checked against the same numbers computed
here in Python."""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from metalcast_api import ApiSection, ApiSettings
from metalcast_api.app import create_app
from metalcast_core import (
    Instrument,
    KafkaSettings,
    PostgresSettings,
    PriceBar,
    S3Settings,
    upsert_instruments,
)
from metalcast_sink.bars import write_bars
from metalcast_sink.writer import copy_ticks
from tests.support import ServerThread

pytestmark = pytest.mark.integration

DAYS = [date(2026, 1, 5) + timedelta(days=i) for i in range(10)]
SPY = [100.0, 110.0, 99.0, 105.0, 120.0, 90.0, 95.0, 130.0, 128.0, 129.0]


def _bars(symbol: str, closes: list[float]) -> list[PriceBar]:
    return [
        PriceBar(
            symbol=symbol,
            source="alphavantage",
            date=day,
            open=close,
            high=close * 1.01,
            low=close * 0.99,
            close=close,
            volume=1000.0 + i,
        )
        for i, (day, close) in enumerate(zip(DAYS, closes, strict=True))
    ]


async def _seed(pg: PostgresSettings) -> None:
    conn = await asyncpg.connect(pg.url)
    try:
        await upsert_instruments(
            conn,
            [
                Instrument(
                    symbol="SPY", kind="etf", cadence="daily", providers={"alphavantage": "SPY"}
                ),
                Instrument(
                    symbol="QQQ", kind="etf", cadence="daily", providers={"alphavantage": "QQQ"}
                ),
            ],
        )
        await write_bars(conn, _bars("SPY", SPY), len(SPY), 0)
        # QQQ moves with SPY, twice as far each day in log terms: correlation 1.
        await write_bars(conn, _bars("QQQ", [50.0 * (c / 100.0) ** 2 for c in SPY]), 10, 0)
        # BTC: two ticks in each of the first hours of two days (the last of an hour counts).
        now = datetime.now(UTC)
        rows = []
        for day in (datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC)):
            for hour in range(3):
                for minute, price in ((5, 90_000.0 + hour), (50, 91_000.0 + hour)):
                    at = day + timedelta(hours=hour, minutes=minute)
                    rows.append(("BTC", "coingecko", "spot", at, price + day.day, "USD", now, None))
        await copy_ticks(conn, rows)
    finally:
        await conn.close()


@pytest.fixture
async def api(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings, s3_settings: S3Settings
) -> Any:
    await _seed(pg_settings)
    settings = ApiSettings(
        environment="test",
        postgres=pg_settings,
        kafka=kafka_settings,
        s3=s3_settings,
        api=ApiSection(api_key=SecretStr("test-api-key-0123456789")),
    )
    server = ServerThread(create_app(settings))
    await asyncio.to_thread(server.__enter__)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        await asyncio.to_thread(server.__exit__)


PERIOD = {"from": "2026-01-01", "to": "2026-02-01"}


async def test_the_catalogue_and_an_instruments_history(api: httpx.AsyncClient) -> None:
    listed = (await api.get("/v1/instruments")).json()
    assert {"XAU", "BTC", "SPY", "QQQ"} <= {i["symbol"] for i in listed}
    etfs = (await api.get("/v1/instruments", params={"kind": "etf"})).json()
    assert {i["symbol"] for i in etfs} == {"SPY", "QQQ"}
    missing = await api.get("/v1/instruments/NOPE")
    assert missing.status_code == 404
    assert "known instruments: BTC, ETH, QQQ, SPY, XAG" in missing.json()["detail"]

    daily = (await api.get("/v1/instruments/SPY/history", params=PERIOD)).json()
    assert daily["cadence"] == "daily"
    assert [b["close"] for b in daily["daily"]] == SPY
    btc = await api.get(
        "/v1/instruments/BTC/history",
        params={"from": "2026-01-05T00:00:00Z", "to": "2026-01-07T00:00:00Z"},
    )
    hourly = btc.json()["hourly"]
    assert len(hourly) == 6
    assert hourly[0] == {"ts": "2026-01-05T00:00:00Z", "price": 91_005.0}  # the hour's last
    btc_daily = (
        await api.get("/v1/instruments/BTC/history", params={**PERIOD, "cadence": "daily"})
    ).json()["daily"]
    assert [(b["open"], b["high"], b["low"], b["close"]) for b in btc_daily] == [
        (90_005.0, 91_007.0, 90_005.0, 91_007.0),
        (90_006.0, 91_008.0, 90_006.0, 91_008.0),
    ]


async def test_drawdowns_and_rallies(api: httpx.AsyncClient) -> None:
    # The oracle: every peak's lowest close before a higher peak, in Python.
    def drawdowns(closes: list[float]) -> list[float]:
        out: dict[int, float] = {}
        peak_i = 0
        for i, c in enumerate(closes):
            if c >= closes[peak_i]:
                peak_i = i
            else:
                out[peak_i] = min(out.get(peak_i, 0.0), c / closes[peak_i] - 1)
        return sorted(out.values())

    answer = await api.get("/v1/analytics/drawdowns", params={"symbols": "SPY", **PERIOD})
    rows = answer.json()
    assert [r["change"] for r in rows] == pytest.approx(drawdowns(SPY))
    assert (rows[0]["start_date"], rows[0]["end_date"]) == ("2026-01-09", "2026-01-10")
    rallies = (
        await api.get("/v1/analytics/rallies", params={"symbols": "SPY", "limit": 1, **PERIOD})
    ).json()
    assert len(rallies) == 1
    assert rallies[0]["change"] == pytest.approx(130.0 / 90.0 - 1)
    assert (rallies[0]["start_date"], rallies[0]["end_date"]) == ("2026-01-10", "2026-01-12")


async def test_returns_volatility_monthly_and_correlation(api: httpx.AsyncClient) -> None:
    rows = (await api.get("/v1/analytics/returns", params={"symbols": "spy", **PERIOD})).json()
    logs = [math.log(b / a) for a, b in itertools.pairwise(SPY)]
    assert rows[0]["log_return"] is None
    assert [r["log_return"] for r in rows[1:]] == pytest.approx(logs)
    assert rows[-1]["volatility_30"] == pytest.approx(statistics.stdev(logs))
    assert rows[-1]["volatility_30_annualised"] == pytest.approx(
        statistics.stdev(logs) * math.sqrt(252)
    )

    [month] = (await api.get("/v1/analytics/monthly", params={"symbols": "SPY", **PERIOD})).json()
    assert month["month"] == "2026-01-01"
    assert month["days"] == 10
    assert month["avg_close"] == pytest.approx(statistics.fmean(SPY))
    assert month["range"] == pytest.approx(130.0 * 1.01 - 90.0 * 0.99)

    [pair] = (
        await api.get("/v1/analytics/correlations", params={"symbols": "SPY,QQQ", **PERIOD})
    ).json()
    assert (pair["symbol_a"], pair["symbol_b"], pair["days"]) == ("QQQ", "SPY", 9)
    assert pair["correlation"] == pytest.approx(1.0)


async def test_unknown_symbols_are_404_naming_the_catalogue(api: httpx.AsyncClient) -> None:
    answer = await api.get("/v1/analytics/returns", params={"symbols": "SPY,NOPE"})
    assert answer.status_code == 404
    assert answer.json()["detail"].startswith("unknown instrument(s) NOPE; known instruments: ")
    empty = await api.get("/v1/analytics/returns", params={"symbols": " , "})
    assert empty.status_code == 422
    # Found by the API fuzz test: a year-5 `to` made the default `from` overflow (a 500).
    ancient = await api.get("/v1/analytics/returns", params={"symbols": "SPY", "to": "0005-01-01"})
    assert ancient.status_code == 422
    assert ancient.json()["detail"][0]["msg"] == "must lie between 1970 and 2200"

"""A model per instrument, on the real servers: a crypto coin (hourly ticks) and an equity
index (daily bars of real prices) are catalogued with a model configuration, trained by the
trainer next to the metals (whose window and candidates stay the trainer's own), and their
production models answer `until=` forecasts in their own cadence through the API."""

from __future__ import annotations

import asyncio
import math
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from metalcast_api import ApiSection, ApiSettings
from metalcast_api.app import create_app
from metalcast_core import (
    BatchLoaded,
    Instrument,
    KafkaSettings,
    ModelConfig,
    PostgresSettings,
    PriceBar,
    S3Settings,
    upsert_instruments,
)
from metalcast_sink.bars import write_bars
from metalcast_sink.writer import copy_ticks
from metalcast_trainer.bootstrap import train_once
from metalcast_trainer.config import TrainerSection, TrainerSettings
from tests.support import ServerThread, fetch

pytestmark = pytest.mark.integration

HOURS = 240
DAYS = 260


def _sp500_closes(n: int) -> list[float]:
    from arch.data import sp500

    closes = sp500.load()["Close"].to_numpy(dtype=float)
    return [float(c) for c in closes[-n:]]


async def _seed(pg: PostgresSettings, now_hour: datetime, today: date) -> None:
    conn = await asyncpg.connect(pg.url)
    try:
        fast = ("naive", "drift")
        await upsert_instruments(
            conn,
            [
                Instrument(
                    symbol="BTC",
                    kind="crypto",
                    unit="coin",
                    providers={"coingecko": "bitcoin"},
                    model=ModelConfig(x_size=24, candidates=fast, horizon=2400),
                ),
                Instrument(
                    symbol="GSPC",
                    kind="equity",
                    cadence="daily",
                    unit="index point",
                    providers={"alphavantage": "GSPC"},
                    model=ModelConfig(x_size=30, candidates=fast),
                ),
            ],
        )
        fetched = datetime.now(UTC)
        price = 95_000.0
        ticks = []
        for h in range(HOURS):
            price *= math.exp(0.003 * math.sin(h * 1.7) + 0.001 * math.cos(h * 0.31))
            at = now_hour - timedelta(hours=HOURS - 1 - h) + timedelta(minutes=3)
            ticks.append(("BTC", "coingecko", "spot", at, round(price, 2), "USD", fetched, None))
        await copy_ticks(conn, ticks)
        closes = _sp500_closes(DAYS)
        bars = [
            PriceBar(
                symbol="GSPC",
                source="alphavantage",
                date=day,
                open=c,
                high=c,
                low=c,
                close=c,
                volume=1.0e9,
            )
            for day, c in zip(_sessions_before(today, DAYS), closes, strict=True)
        ]
        await write_bars(conn, bars, len(bars), 0)
    finally:
        await conn.close()


def _nyse() -> Any:
    import exchange_calendars as xc

    return xc.get_calendar("XNYS")


def _sessions_before(today: date, n: int) -> list[date]:
    """The last ``n`` NYSE sessions before ``today``: the days an index has bars."""
    found = _nyse().sessions_in_range(today - timedelta(days=2 * n + 10), today - timedelta(days=1))
    return [ts.date() for ts in found[-n:]]


def _trainer(pg: PostgresSettings, kafka: KafkaSettings, s3: S3Settings, work: Path) -> Any:
    section = TrainerSection.model_validate(
        {"candidates": ["naive", "drift"], "work_dir": work, "backtest_origins": 24}
    )
    return TrainerSettings(postgres=pg, kafka=kafka, s3=s3, trainer=section)


async def test_crypto_and_equity_models_train_and_answer_until_forecasts(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    now_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    today = now_hour.date()
    await _seed(pg_settings, now_hour, today)
    settings = _trainer(pg_settings, kafka_settings, s3_settings, tmp_path)
    report = await train_once(settings)
    # No metal prices here: the metals fail with their reason, the instruments train.
    assert set(report.promoted) == {"BTC", "GSPC"}, report
    assert report.status == "partial"
    assert report.failed["XAU"].startswith("too few rows: 0 observed hourly values, need 12")
    rows = await fetch(
        pg_settings,
        "SELECT symbol, window_end, n_observations, artifact_uri FROM ml.model_versions "
        "ORDER BY symbol",
    )
    by_symbol = {r["symbol"]: r for r in rows}
    assert by_symbol["BTC"]["n_observations"] == 24
    assert by_symbol["BTC"]["window_end"] == now_hour
    assert by_symbol["GSPC"]["n_observations"] == 30
    cutoff = _sessions_before(today, 1)[0]
    assert by_symbol["GSPC"]["window_end"] == datetime.combine(cutoff, datetime.min.time(), UTC)
    assert by_symbol["GSPC"]["artifact_uri"].endswith("/GSPC/1/GSPC.zip")

    # The trainer's loop trains an instrument when a batch touched it, not otherwise.
    from metalcast_core import create_pool, make_s3_client
    from metalcast_trainer.runner import TrainingRunner

    pool = await create_pool(pg_settings)
    try:
        runner = TrainingRunner(settings, pool, make_s3_client(s3_settings))
        bars_batch = BatchLoaded(
            symbols=["GSPC"], first_hour=None, last_hour=None, rows_inserted=1, ticks_received=1
        )
        other = BatchLoaded(
            symbols=["QQQ"], first_hour=None, last_hour=None, rows_inserted=1, ticks_received=1
        )
        assert await runner.wants([other]) == "no metal in the batch"
        assert await runner.wants([bars_batch]) is None
        again = await runner.run("batch-loaded")
        assert set(again.unchanged) == {"GSPC"}  # its window did not move: no new version
        assert not again.failed  # the metals were not touched, so not trained
    finally:
        await pool.close()

    api_settings = ApiSettings(
        environment="test",
        postgres=pg_settings,
        kafka=kafka_settings,
        s3=s3_settings,
        api=ApiSection(api_key=SecretStr("test-api-key-0123456789")),
    )
    server = ServerThread(create_app(api_settings))
    await asyncio.to_thread(server.__enter__)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as api:
            until = now_hour + timedelta(days=5, minutes=30)
            btc = await api.get("/v1/forecasts/BTC", params={"until": until.isoformat()})
            assert btc.status_code == 200, btc.text
            body = btc.json()
            assert body["cadence"] == "hourly"
            assert body["horizon"] == 5 * 24 + 1  # every hour after the cutoff up to `until`
            steps = body["steps"]
            assert steps[0]["ts"] == (now_hour + timedelta(hours=1)).isoformat().replace(
                "+00:00", "Z"
            )
            assert all(
                s["lower_95"] <= s["lower_80"] <= s["point"] <= s["upper_80"] <= s["upper_95"]
                for s in steps
            )

            # An index steps in NYSE trading days: until a Saturday ~6 weeks out, every
            # session after the cutoff up to the first one on or after it (the Monday, or
            # later if that is a holiday); no weekend or holiday among the steps.
            target = today + timedelta(days=40)
            target += timedelta(days=(5 - target.weekday()) % 7)  # a Saturday
            nyse = _nyse()
            sessions = [
                ts.date() for ts in nyse.sessions_in_range(cutoff + timedelta(days=1), target)
            ]
            after = nyse.date_to_session(target, direction="next").date()
            gspc = await api.get("/v1/forecasts/GSPC", params={"until": target.isoformat()})
            assert gspc.status_code == 200, gspc.text
            body = gspc.json()
            assert body["cadence"] == "daily"
            days = [date.fromisoformat(s["ts"][:10]) for s in body["steps"]]
            assert days == [*sessions, after]
            assert body["horizon"] == len(sessions) + 1 < (target - cutoff).days
            assert all(d.weekday() < 5 for d in days)

            past = await api.get("/v1/forecasts/GSPC", params={"until": "2020-01-01"})
            assert past.status_code == 422
            assert "is in the past" in past.json()["detail"][0]["msg"]
            far = await api.get(
                "/v1/forecasts/GSPC", params={"until": (today + timedelta(days=800)).isoformat()}
            )
            assert far.status_code == 422
            assert "the maximum is 366 trading days" in far.json()["detail"][0]["msg"]
            unknown = await api.get("/v1/forecasts/NOPE", params={"horizon": 3})
            assert unknown.status_code == 404
            assert "other instruments: BTC, ETH, GSPC" in unknown.json()["detail"]
            # An instrument's models through the same endpoints as a metal's.
            versions = await api.get("/v1/models/gspc/versions")
            assert versions.status_code == 200, versions.text
            assert [v["version"] for v in versions.json()] == [1]
            production = (await api.get("/v1/models/GSPC/production")).json()
            assert production["symbol"] == "GSPC"
            assert production["version"] == 1
            backtest = await api.get("/v1/models/BTC/backtest")
            assert backtest.status_code == 200, backtest.text
            none = await api.get("/v1/models/NOPE/versions")
            assert none.status_code == 404
            assert "known symbols with models: BTC, GSPC, XAG" in none.json()["detail"]
            # The metals answer as before: no model yet is a 409.
            assert (await api.get("/v1/forecasts/XAU", params={"horizon": 3})).status_code == 409
            assert (await api.get("/instruments/stocks")).status_code == 404
        # The dashboard's page per kind, in headless Chromium: history, forecast and bands.
        from tests.e2e.api.test_dashboard import _run

        for kind, symbol, steps in (("crypto", "BTC", 48), ("equity", "GSPC", 30)):
            dom = await asyncio.to_thread(_run, ["--dump-dom", f"{server.url}/instruments/{kind}"])
            assert 'data-ready="true"' in dom, dom[:2000]
            tag = re.search(rf'<div class="chart" id="chart-{symbol}"[^>]*>', dom)
            assert tag, dom[:2000]
            points = int(re.search(r'data-points="(\d+)"', tag.group(0)).group(1))  # type: ignore[union-attr]
            shown = int(re.search(r'data-forecast-steps="(\d+)"', tag.group(0)).group(1))  # type: ignore[union-attr]
            assert points > 20, (kind, points)
            assert shown == steps, (kind, shown)
            assert "<canvas" in dom
            assert "model: <b>v1</b>" in dom
    finally:
        await asyncio.to_thread(server.__exit__)

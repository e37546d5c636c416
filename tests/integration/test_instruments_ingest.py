"""Every instrument, on the real servers: a recorded 90-day CoinGecko range and real daily
prices replayed as Alpha Vantage answers go through the real publishers, Kafka and the sink
into PostgreSQL exactly once when replayed twice; bad bars end in the DLQ while the good ones
around them land; a bar for an instrument not yet catalogued is refused until
`metalcast instruments add` catalogues it."""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from metalcast_core import (
    BARS_DLQ,
    BATCH_LOADED,
    Catalogue,
    KafkaSettings,
    PostgresSettings,
    make_producer,
)
from metalcast_ingestor.publisher import BarPublisher
from metalcast_ingestor.runner import backfill, fetch_bars
from metalcast_ingestor.sources import AlphaVantageSource, CoinGeckoSource, RetryPolicy
from metalcast_sink.bootstrap import run_bar_sink, run_sink
from metalcast_sink.cli import make_instruments_app
from metalcast_sink.config import SinkSettings
from tests.support import FAST_GROUP, fetch, fetchval, publisher, read_all, sink_settings
from tests.unit.ingestor.ingestor_kit import FakeClock, Routes, recorded

pytestmark = pytest.mark.integration

CHART = "/api/v3/coins/bitcoin/market_chart/range"
RANGE_START = datetime(2025, 6, 1, tzinfo=UTC)  # the recorded range: 2025-06-01 + 90 days
RANGE_END = datetime(2025, 8, 30, tzinfo=UTC)


def _policy() -> RetryPolicy:
    clock = FakeClock()
    return RetryPolicy(attempts=3, min_interval=0, sleep=clock.sleep, clock=clock.clock)


def _settings(pg: PostgresSettings, kafka: KafkaSettings) -> SinkSettings:
    settings = sink_settings(pg, kafka)
    settings.sink.bars_group_id = f"bars-{uuid.uuid4().hex[:8]}"
    return settings


def _av_series(symbol: str, csv_gz: Path) -> dict[str, Any]:
    """Daily prices shipped inside ``arch`` (the Kaggle/Yahoo column layout: Date, Open, High,
    Low, Close, Adj Close, Volume) as Alpha Vantage's TIME_SERIES_DAILY answer, every number a
    string as Alpha Vantage sends it."""
    lines = gzip.decompress(csv_gz.read_bytes()).decode().splitlines()
    assert lines[0] == "Date,Open,High,Low,Close,Adj Close,Volume"
    series: dict[str, dict[str, str]] = {}
    for line in lines[1:]:
        day, open_, high, low, close, _adj, volume = line.split(",")
        iso = datetime.strptime(day, "%m/%d/%Y").date().isoformat()
        series[iso] = {
            "1. open": open_,
            "2. high": high,
            "3. low": low,
            "4. close": close,
            "5. volume": str(int(float(volume))),
        }
    return {
        "Meta Data": {
            "1. Information": "Daily Prices (open, high, low, close) and Volumes",
            "2. Symbol": symbol,
            "3. Last Refreshed": max(series),
            "4. Output Size": "Full size",
            "5. Time Zone": "US/Eastern",
        },
        "Time Series (Daily)": series,
    }


def _arch_file(name: str) -> Path:
    import arch.data

    return Path(arch.data.__file__).parent / name / f"{name}.csv.gz"


@asynccontextmanager
async def _bar_publisher(kafka: KafkaSettings, known: Catalogue) -> AsyncIterator[BarPublisher]:
    producer = make_producer(kafka)
    await producer.start()
    try:
        yield BarPublisher(producer, kafka, known)
    finally:
        await producer.stop()


async def test_a_recorded_90_day_coingecko_range_lands_exactly_once_replayed_twice(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    routes = Routes({CHART: "coingecko/market_chart_range_bitcoin_90d.json"})
    recorded_points = json.loads(recorded("coingecko/market_chart_range_bitcoin_90d.json").content)
    settings = _settings(pg_settings, kafka_settings)
    source = CoinGeckoSource(
        httpx.AsyncClient(transport=httpx.MockTransport(routes)), retry=_policy()
    )
    for _ in range(2):
        async with publisher(kafka_settings, settings.known_symbols) as pub:
            stats = await backfill(
                source, ["BTC"], RANGE_START, RANGE_END, pub, show_progress=False
            )
        assert stats.published == len(recorded_points["prices"]) == 90 * 24
        await run_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
    assert source.failures == []
    count = await fetchval(
        pg_settings,
        "SELECT count(*) FROM prices.ticks WHERE symbol = 'BTC' AND source = $1",
        "coingecko",
    )
    assert count == 90 * 24
    hourly = await fetchval(
        pg_settings, "SELECT count(*) FROM analytics.instrument_prices_hourly WHERE symbol = 'BTC'"
    )
    assert hourly == 90 * 24
    # The metals' hourly table is untouched by crypto.
    assert await fetchval(pg_settings, "SELECT count(*) FROM analytics.metal_prices") == 0
    events = [BATCH_LOADED.decode(v) for v in await read_all(kafka_settings, BATCH_LOADED)]
    assert sum(e.rows_inserted for e in events) == 90 * 24  # the replay announced nothing new


async def test_real_daily_prices_as_alpha_vantage_answers_land_exactly_once_replayed_twice(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    answers = {
        "GSPC": _av_series("GSPC", _arch_file("sp500")),
        "IXIC": _av_series("IXIC", _arch_file("nasdaq")),
    }

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.params["outputsize"] == "full"
        return httpx.Response(200, json=answers[request.url.params["symbol"]])

    routes = Routes({"/query": answer})
    source = AlphaVantageSource(
        httpx.AsyncClient(transport=httpx.MockTransport(routes)),
        "test-key",
        _policy(),
        codes={"GSPC": "GSPC", "IXIC": "IXIC"},
    )
    settings = _settings(pg_settings, kafka_settings)
    instruments = CliRunner()
    app = make_instruments_app(lambda: settings)

    # Not catalogued yet: the ingestor would refuse them, so publish as a misconfigured
    # producer would (the sink is the gate that counts): the sink dead-letters every bar.
    async with _bar_publisher(kafka_settings, Catalogue(extra=["GSPC", "IXIC"])) as pub:
        stats = await fetch_bars(source, ["GSPC", "IXIC"], True, pub, show_progress=False)
    days = sum(len(a["Time Series (Daily)"]) for a in answers.values())
    # Real data holds bad input too: two NASDAQ days with a volume of 0 are refused by the
    # ingestor (zero volume is not a trade); every other day is published.
    assert stats.reasons == [
        "IXIC 2015-05-12: volume '0' is not positive",
        "IXIC 2018-01-09: volume '0' is not positive",
    ]
    expected = days - 2
    assert stats.published == expected > 9000
    refused = await run_bar_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
    assert refused.rows_written == 0
    assert refused.dead_lettered == expected
    assert "not in the instrument catalogue" in refused.reasons[0]

    # `metalcast instruments add`, then the same answers twice: each bar lands once.
    for symbol in ("GSPC", "IXIC"):
        result = await asyncio.to_thread(
            instruments.invoke,
            app,
            [
                "add",
                symbol,
                "--kind",
                "equity",
                "--cadence",
                "daily",
                "--unit",
                "index point",
                "--provider",
                f"alphavantage={symbol}",
                "--x-size",
                "30",
            ],
        )
        assert result.exit_code == 0, result.output
    listed = await asyncio.to_thread(instruments.invoke, app, ["list"])
    assert "GSPC" in listed.output
    assert "alphavantage=IXIC" in listed.output
    catalogue = Catalogue(extra=["GSPC", "IXIC"])
    written = []
    for _ in range(2):
        async with _bar_publisher(kafka_settings, catalogue) as pub:
            await fetch_bars(source, ["GSPC", "IXIC"], True, pub, show_progress=False)
        stats_run = await run_bar_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
        written.append(stats_run.rows_written)
    assert written == [expected, 0]
    assert await fetchval(pg_settings, "SELECT count(*) FROM prices.bars") == expected
    row = (
        await fetch(
            pg_settings,
            "SELECT open::float8, high::float8, low::float8, close::float8, volume::float8, "
            "currency, raw->>'4. close' AS raw_close FROM prices.bars "
            "WHERE symbol = 'GSPC' AND date = '1999-01-04'",
        )
    )[0]
    assert dict(row) == {
        "open": 1229.22998,
        "high": 1248.810059,
        "low": 1219.099976,
        "close": 1228.099976,
        "volume": 877000000.0,
        "currency": "USD",
        "raw_close": "1228.099976",
    }
    daily = await fetchval(
        pg_settings, "SELECT count(*) FROM analytics.instrument_prices_daily WHERE symbol = 'IXIC'"
    )
    assert daily == len(answers["IXIC"]["Time Series (Daily)"]) - 2
    events = [BATCH_LOADED.decode(v) for v in await read_all(kafka_settings, BATCH_LOADED)]
    assert {e.table for e in events} == {"prices.bars"}
    assert sum(e.rows_inserted for e in events) == expected


async def test_bad_bars_go_to_the_dlq_and_the_good_ones_around_them_land(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    routes = Routes({"/query": "alphavantage/daily_SPY_bad_values.json"})
    source = AlphaVantageSource(
        httpx.AsyncClient(transport=httpx.MockTransport(routes)), "test-key", _policy()
    )
    settings = _settings(pg_settings, kafka_settings)
    result = await asyncio.to_thread(
        CliRunner().invoke,
        make_instruments_app(lambda: settings),
        ["add", "SPY", "--kind", "etf", "--cadence", "daily", "--provider", "alphavantage=SPY"],
    )
    assert result.exit_code == 0, result.output
    async with _bar_publisher(kafka_settings, Catalogue(extra=["SPY"])) as pub:
        stats = await fetch_bars(source, ["SPY"], False, pub, show_progress=False)
    assert stats.published == 2
    await run_bar_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
    rows = await fetch(pg_settings, "SELECT date::text FROM prices.bars ORDER BY date")
    assert [r["date"] for r in rows] == ["2026-11-20", "2026-11-27"]
    letters = [BARS_DLQ.decode(v) for v in await read_all(kafka_settings, BARS_DLQ)]
    reasons = sorted(d.reason for d in letters)
    assert len(reasons) == 6
    assert all(d.stage == "ingestor" for d in letters)
    assert "date 2099-01-02 is in the future" in reasons
    assert any(r.startswith("inconsistent bar: open 589") for r in reasons)
    assert "SPY 2026-11-25: volume '0' is not positive" in reasons
    assert "SPY 2026-11-26: close 'n/a' is not a number" in reasons


async def test_a_tick_of_an_uncatalogued_instrument_is_dead_lettered_until_it_is_added(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    """The running sink re-reads the catalogue: `metalcast instruments add` takes effect
    without a restart."""
    from metalcast_core import TICKS_DLQ, PriceTick

    settings = _settings(pg_settings, kafka_settings)
    settings.sink.catalogue_refresh_s = 0.5
    stop = asyncio.Event()
    sink = asyncio.create_task(run_sink(settings, stop=stop, consumer_options=FAST_GROUP))
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)

    def tick(minute: int) -> PriceTick:
        return PriceTick(
            symbol="SOL",
            source="coingecko",
            observed_at=at.replace(minute=minute),
            price=180.5 + minute,
        )

    try:
        async with publisher(kafka_settings, ["SOL"]) as pub:  # a producer that knows SOL
            await pub.publish([tick(1)])
        deadline = asyncio.get_running_loop().time() + 60
        while not await read_all(kafka_settings, TICKS_DLQ, timeout_s=1):
            assert asyncio.get_running_loop().time() < deadline, "no dead letter"
        [letter] = [TICKS_DLQ.decode(v) for v in await read_all(kafka_settings, TICKS_DLQ)]
        assert letter.reason.startswith("unknown symbol 'SOL'; known: BTC, ETH, XAG")

        result = await asyncio.to_thread(
            CliRunner().invoke,
            make_instruments_app(lambda: settings),
            ["add", "SOL", "--kind", "crypto", "--unit", "coin", "--provider", "coingecko=solana"],
        )
        assert result.exit_code == 0, result.output
        await asyncio.sleep(1.5)  # three refreshes of the running sink's catalogue
        async with publisher(kafka_settings, ["SOL"]) as pub:
            await pub.publish([tick(2)])
        sql = "SELECT price::float8 FROM prices.ticks WHERE symbol = 'SOL'"
        while not await fetch(pg_settings, sql):
            assert asyncio.get_running_loop().time() < deadline, "the tick did not land"
            await asyncio.sleep(0.2)
        assert [r["price"] for r in await fetch(pg_settings, sql)] == [182.5]
    finally:
        stop.set()
        await sink


async def test_scheduled_bars_within_the_day_s_budget_land_and_the_deferred_follow_next_day(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """The schedule mode's run (``metalcast ingest bars --schedule``): three catalogued
    stocks, two requests left today: two fetched, published on the real Kafka and stored by
    the bar sink; the third deferred, reported, and fetched first by the next day's run."""
    from datetime import time, timedelta

    from metalcast_ingestor.daily_bars import BarLedger, run_planned
    from metalcast_ingestor.sources import RequestBudget

    series = _av_series("GSPC", _arch_file("sp500"))
    recent = dict(sorted(series["Time Series (Daily)"].items())[-100:])  # a compact answer

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.params["outputsize"] == "compact"
        meta = {**series["Meta Data"], "2. Symbol": request.url.params["symbol"]}
        return httpx.Response(200, json={"Meta Data": meta, "Time Series (Daily)": recent})

    symbols = ["AAA", "BBB", "CCC"]
    routes = Routes({"/query": answer})
    day = [datetime(2026, 11, 27, tzinfo=UTC).date()]
    budget = RequestBudget(tmp_path / "budget.json", {"alphavantage": 3}, today=lambda: day[0])
    budget.take("alphavantage")
    source = AlphaVantageSource(
        httpx.AsyncClient(transport=httpx.MockTransport(routes)),
        "test-key",
        _policy(),
        codes={s: s for s in symbols},
        budget=budget,
    )
    ledger = BarLedger(tmp_path / "bars-ledger.json")
    settings = _settings(pg_settings, kafka_settings)
    at = time(22, 30)
    friday = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    async with _bar_publisher(kafka_settings, Catalogue(extra=symbols)) as pub:
        first = await run_planned(source, symbols, pub, budget, ledger, friday, at)
        assert first.fetched == ["AAA", "BBB"]
        assert first.deferred == ["CCC"]
        assert first.as_json()["deferred"] == ["CCC"]
        assert budget.status("alphavantage").left == 0
        day[0] += timedelta(days=1)
        second = await run_planned(
            source, symbols, pub, budget, ledger, friday + timedelta(days=1), at
        )
        assert second.fetched == ["CCC"]
        assert second.plan.fresh == ["AAA", "BBB"]
    assert routes.total == 3

    import asyncpg

    from metalcast_core import Instrument, upsert_instruments

    conn = await asyncpg.connect(pg_settings.url)
    try:
        await upsert_instruments(
            conn,
            [
                Instrument(symbol=s, kind="equity", cadence="daily", providers={"alphavantage": s})
                for s in symbols
            ],
        )
    finally:
        await conn.close()
    stats = await run_bar_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
    assert stats.rows_written == 3 * len(recent)
    rows = await fetch(
        pg_settings, "SELECT symbol, count(*) AS n FROM prices.bars GROUP BY symbol ORDER BY 1"
    )
    assert {r["symbol"]: r["n"] for r in rows} == dict.fromkeys(symbols, len(recent))


async def test_the_bars_schedule_front_door_fetches_within_the_budget_and_reports_the_rest(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """``python -m metalcast_ingestor bars --schedule`` as compose's ingestor-bars runs it
    (settings from the environment; Alpha Vantage: a local server answering real daily prices):
    the catalogued equities and ETFs with an Alpha Vantage id, one request left today: one
    stock's bars published on the real Kafka, the other deferred and said so on its JSON line;
    SIGTERM stops it cleanly."""
    import os
    import signal
    import sys
    import threading
    from datetime import timedelta
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    import asyncpg

    from metalcast_core import BARS, Instrument, upsert_instruments

    series = _av_series("GSPC", _arch_file("sp500"))
    recent = dict(sorted(series["Time Series (Daily)"].items())[-100:])
    asked: list[str] = []

    class AlphaVantage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            symbol = parse_qs(urlsplit(self.path).query)["symbol"][0]
            asked.append(symbol)
            meta = {**series["Meta Data"], "2. Symbol": symbol}
            body = json.dumps({"Meta Data": meta, "Time Series (Daily)": recent}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), AlphaVantage)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    conn = await asyncpg.connect(pg_settings.url)
    try:
        await upsert_instruments(
            conn,
            [
                Instrument(
                    symbol="AAA", kind="equity", cadence="daily", providers={"alphavantage": "AAA"}
                ),
                Instrument(
                    symbol="BBB", kind="etf", cadence="daily", providers={"alphavantage": "BBB"}
                ),
                # Not scheduled: not an equity or ETF, or no Alpha Vantage id.
                Instrument(
                    symbol="EURX", kind="fx", cadence="daily", providers={"alphavantage": "EURX"}
                ),
                Instrument(symbol="CCC", kind="equity", cadence="daily", providers={}),
            ],
        )
    finally:
        await conn.close()
    today = datetime.now(UTC).date().isoformat()
    budget_file = tmp_path / "request-budget.json"
    budget_file.write_text(json.dumps({"alphavantage": {"day": today, "used": 24}}))
    env = {
        **os.environ,
        "METALCAST_POSTGRES__URL": pg_settings.url,
        "METALCAST_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "METALCAST_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
        "METALCAST_INGEST__ALPHAVANTAGE_KEY": "test-key",
        "METALCAST_INGEST__BASE_URLS": json.dumps(
            {"alphavantage": f"http://127.0.0.1:{server.server_address[1]}"}
        ),
        "METALCAST_INGEST__BUDGET_FILE": str(budget_file),
        "METALCAST_LOG_LEVEL": "INFO",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "metalcast_ingestor",
        "bars",
        "--schedule",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line, (await proc.stderr.read()).decode()[-3000:]
        report = json.loads(line)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        server.shutdown()
    log = (await proc.stderr.read()).decode()
    assert proc.returncode == 0, log[-3000:]
    assert report["fetched"] == ["AAA"]
    assert report["deferred"] == ["BBB"]
    assert report["plan"]["budget_left"] == 1
    assert report["published"] == len(recent)
    assert asked == ["AAA"]
    assert "1 symbol(s) deferred to the next run (1 requests left today" in log
    assert json.loads(budget_file.read_text())["alphavantage"]["used"] == 25
    ledger = json.loads((tmp_path / "bars-ledger.json").read_text())
    assert list(ledger) == ["AAA"]
    assert datetime.fromisoformat(ledger["AAA"]) > datetime.now(UTC) - timedelta(minutes=5)
    published = await read_all(kafka_settings, BARS)
    assert len(published) == len(recent)

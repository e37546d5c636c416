"""Daily bars on a schedule: when a run is due, what one run fetches within the day's
request budget, what it defers (and that the deferred go first next time), on recorded Alpha
Vantage answers through MockTransport and a publisher that keeps what it is given."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, cast

import httpx

from metalcast_core import Catalogue, Instrument, PriceBar
from metalcast_ingestor.bootstrap import scheduled_bar_symbols
from metalcast_ingestor.daily_bars import (
    BarLedger,
    BarRunReport,
    last_close,
    next_run,
    plan,
    run_bars_schedule,
    run_planned,
)
from metalcast_ingestor.publisher import BarPublisher, PublishStats
from metalcast_ingestor.sources import AlphaVantageSource, RequestBudget, RetryPolicy
from tests.unit.ingestor.ingestor_kit import Routes

AT = time(22, 30)
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "providers" / "alphavantage"
# Friday 2026-11-27, 23:00 UTC: after that day's close.
FRIDAY_NIGHT = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
ClientFor = Callable[[Routes], httpx.AsyncClient]


def test_the_latest_close_is_a_weekday_s_and_runs_are_daily() -> None:
    assert last_close(FRIDAY_NIGHT, AT) == datetime(2026, 11, 27, 22, 30, tzinfo=UTC)
    before = datetime(2026, 11, 27, 22, 29, tzinfo=UTC)
    assert last_close(before, AT) == datetime(2026, 11, 26, 22, 30, tzinfo=UTC)
    sunday = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
    assert last_close(sunday, AT) == datetime(2026, 11, 27, 22, 30, tzinfo=UTC)
    assert next_run(FRIDAY_NIGHT, AT) == datetime(2026, 11, 28, 22, 30, tzinfo=UTC)
    assert next_run(before, AT) == datetime(2026, 11, 27, 22, 30, tzinfo=UTC)


def test_the_plan_takes_the_oldest_first_up_to_the_budget_and_defers_the_rest() -> None:
    close = last_close(FRIDAY_NIGHT, AT)
    fetched = {
        "AAA": close + timedelta(minutes=5),  # fetched since the close: fresh
        "BBB": close - timedelta(days=3),
        "CCC": close - timedelta(days=1),
    }
    chosen = plan(["AAA", "BBB", "CCC", "DDD", "EEE"], fetched, FRIDAY_NIGHT, AT, left=3)
    # Never fetched first (by name), then the oldest fetch.
    assert chosen.now == ["DDD", "EEE", "BBB"]
    assert chosen.deferred == ["CCC"]
    assert chosen.fresh == ["AAA"]
    assert plan(["BBB"], fetched, FRIDAY_NIGHT, AT, left=-2).deferred == ["BBB"]


def _answer(request: httpx.Request) -> httpx.Response:
    """The recorded IBM answer, named for the symbol asked for."""
    body = json.loads((FIXTURES / "daily_IBM_compact.json").read_text())
    body["Meta Data"]["2. Symbol"] = request.url.params["symbol"]
    return httpx.Response(200, json=body)


class KeptBars:
    """A BarPublisher's ``publish``: keeps the bars, counts them as the real one does."""

    def __init__(self) -> None:
        self.bars: list[PriceBar] = []

    async def publish(self, chunk: list[Any]) -> PublishStats:
        stats = PublishStats()
        for item in chunk:
            if isinstance(item, PriceBar):
                self.bars.append(item)
                stats.published += 1
                stats.by_symbol[item.symbol] += 1
            else:
                stats.dead_lettered += 1
        return stats


def _source(client: httpx.AsyncClient, policy: RetryPolicy, budget: RequestBudget) -> Any:
    codes = {s: s for s in SYMBOLS}
    return AlphaVantageSource(client, "AVKEY123", policy, codes=codes, budget=budget)


SYMBOLS = [f"S{n:02d}" for n in range(30)]


async def test_thirty_symbols_on_a_25_request_day_fetch_25_and_defer_5_first_in_line_next(
    client_for: ClientFor, policy: RetryPolicy, tmp_path: Path
) -> None:
    routes = Routes({"/query": _answer})
    day = [FRIDAY_NIGHT.date()]
    budget = RequestBudget(tmp_path / "budget.json", {"alphavantage": 25}, today=lambda: day[0])
    budget.take("alphavantage")  # a hands-on run spent one already today
    ledger = BarLedger(tmp_path / "bars-ledger.json")
    source = _source(client_for(routes), policy, budget)
    kept = KeptBars()
    publisher = cast(BarPublisher, kept)

    first = await run_planned(source, SYMBOLS, publisher, budget, ledger, FRIDAY_NIGHT, AT, 2)
    # 24 left, 2 kept in reserve: 22 fetched, 8 deferred, said in the report.
    assert first.fetched == SYMBOLS[:22]
    assert first.deferred == SYMBOLS[22:]
    assert routes.total == 22
    assert budget.status("alphavantage").left == 2
    assert first.stats.published == 22 * 5
    assert {b.symbol for b in kept.bars} == set(SYMBOLS[:22])
    assert first.as_json()["deferred"] == SYMBOLS[22:]

    # Saturday night: a new day's budget; only the deferred are due (no new close).
    day[0] = FRIDAY_NIGHT.date() + timedelta(days=1)
    saturday = FRIDAY_NIGHT + timedelta(days=1)
    second = await run_planned(source, SYMBOLS, publisher, budget, ledger, saturday, AT, 2)
    assert second.fetched == SYMBOLS[22:]
    assert second.deferred == []
    assert second.plan.fresh == SYMBOLS[:22]
    assert routes.total == 30

    # Monday night: every symbol due again; the ones fetched longest ago first.
    day[0] = FRIDAY_NIGHT.date() + timedelta(days=3)
    monday = FRIDAY_NIGHT + timedelta(days=3)
    third = await run_planned(source, SYMBOLS, publisher, budget, ledger, monday, AT, 0)
    assert third.fetched == SYMBOLS[:25]
    assert third.deferred == SYMBOLS[25:]


async def test_the_provider_saying_the_day_is_spent_stops_the_run_and_defers_the_rest(
    client_for: ClientFor, policy: RetryPolicy, tmp_path: Path
) -> None:
    limit = (FIXTURES / "information_daily_limit.json").read_text()
    routes = Routes({"/query": [_answer, _answer, lambda _r: httpx.Response(200, text=limit)]})
    budget = RequestBudget(
        tmp_path / "budget.json", {"alphavantage": 25}, today=lambda: FRIDAY_NIGHT.date()
    )
    ledger = BarLedger(tmp_path / "bars-ledger.json")
    source = _source(client_for(routes), policy, budget)
    report = await run_planned(
        source, SYMBOLS[:5], cast(BarPublisher, KeptBars()), budget, ledger, FRIDAY_NIGHT, AT
    )
    assert report.fetched == SYMBOLS[:2]  # the third answer says the day is spent
    assert report.stopped is not None
    assert "used up" in report.stopped
    assert report.deferred == SYMBOLS[2:5]
    assert set(ledger.read()) == set(report.fetched)
    assert budget.status("alphavantage").left == 0


async def test_the_schedule_runs_at_start_then_at_every_next_close_until_stopped() -> None:
    now = [FRIDAY_NIGHT]
    runs: list[datetime] = []
    waits: list[float] = []
    stop = asyncio.Event()

    async def run(at: datetime) -> BarRunReport:
        runs.append(at)
        if len(runs) == 3:
            stop.set()
        return BarRunReport(plan([], {}, at, AT, 25))

    async def wait(seconds: float, _stop: asyncio.Event) -> None:
        waits.append(seconds)
        now[0] += timedelta(seconds=seconds)

    await asyncio.wait_for(run_bars_schedule(run, AT, stop, clock=lambda: now[0], wait=wait), 5)
    saturday = datetime(2026, 11, 28, 22, 30, tzinfo=UTC)
    assert runs == [FRIDAY_NIGHT, saturday, saturday + timedelta(days=1)]
    assert waits[:2] == [23.5 * 3600, 24 * 3600]


def test_the_schedule_takes_the_catalogued_equities_and_etfs_with_an_alpha_vantage_id() -> None:
    catalogue = Catalogue(
        [
            Instrument(
                symbol="SPY", kind="etf", cadence="daily", providers={"alphavantage": "SPY"}
            ),
            Instrument(
                symbol="IBM", kind="equity", cadence="daily", providers={"alphavantage": "IBM"}
            ),
            Instrument(
                symbol="EURUSD", kind="fx", cadence="daily", providers={"alphavantage": "EUR"}
            ),
            Instrument(symbol="BTC", kind="crypto", providers={"coingecko": "bitcoin"}),
            Instrument(symbol="QQQ", kind="etf", cadence="daily", providers={}),
        ]
    )
    source = AlphaVantageSource(httpx.AsyncClient(), "key")
    assert scheduled_bar_symbols(source, catalogue, None) == ["IBM", "SPY"]
    assert scheduled_bar_symbols(source, catalogue, ["SPY"]) == ["SPY"]

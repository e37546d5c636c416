"""Alpha Vantage daily bars on recorded answers: good series, numbers as strings, bad days
among good ones, and its HTTP-200 limit answers (Note, Information, Error Message)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import httpx
import pytest

from metalcast_core import PriceBar
from metalcast_ingestor.sources import (
    AlphaVantageSource,
    BudgetExhausted,
    Rejected,
    RequestBudget,
    RetryPolicy,
    Throttled,
)
from tests.unit.ingestor.ingestor_kit import FakeClock, Routes

ClientFor = Callable[[Routes], httpx.AsyncClient]
QUERY = "/query"


def _source(client: httpx.AsyncClient, policy: RetryPolicy, **kwargs: object) -> AlphaVantageSource:
    return AlphaVantageSource(client, "AVKEY123", policy, **kwargs)  # type: ignore[arg-type]


async def _all(source: AlphaVantageSource, symbols: list[str], full: bool = False) -> list[object]:
    return [item async for chunk in source.daily_bars(symbols, full=full) for item in chunk]


async def test_a_compact_series_becomes_bars_oldest_first(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({QUERY: "alphavantage/daily_IBM_compact.json"})
    out = await _all(_source(client_for(routes), policy), ["IBM"])
    bars = [b for b in out if isinstance(b, PriceBar)]
    assert len(bars) == len(out) == 5
    assert [b.date for b in bars] == sorted(b.date for b in bars)
    last = bars[-1]
    assert (last.symbol, last.source, last.date) == ("IBM", "alphavantage", date(2026, 11, 27))
    assert (last.open, last.high, last.low, last.close, last.volume) == (
        231.4,
        233.1,
        230.88,
        232.75,
        2412345.0,
    )
    assert last.raw is not None
    assert last.raw["4. close"] == "232.7500"
    params = routes.requests[0].url.params
    assert params["function"] == "TIME_SERIES_DAILY"
    assert params["symbol"] == "IBM"
    assert params["outputsize"] == "compact"
    assert params["apikey"] == "AVKEY123"


async def test_full_asks_for_the_full_series_and_the_catalogue_names_ids_and_currency(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({QUERY: "alphavantage/daily_IBM_compact.json"})
    source = _source(
        client_for(routes), policy, codes={"BIGBLUE": "IBM"}, currencies={"BIGBLUE": "EUR"}
    )
    out = await _all(source, ["BIGBLUE"], full=True)
    assert routes.requests[0].url.params["outputsize"] == "full"
    assert routes.requests[0].url.params["symbol"] == "IBM"
    assert {b.symbol for b in out if isinstance(b, PriceBar)} == {"BIGBLUE"}
    assert {b.currency for b in out if isinstance(b, PriceBar)} == {"EUR"}


async def test_bad_days_are_rejected_and_the_good_days_around_them_kept(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({QUERY: "alphavantage/daily_SPY_bad_values.json"})
    out = await _all(_source(client_for(routes), policy, codes={"SPY": "SPY"}), ["SPY"])
    good = {b.date.isoformat() for b in out if isinstance(b, PriceBar)}
    reasons = sorted(r.reason for r in out if isinstance(r, Rejected))
    # The future day and the inconsistent bar (high below low) parse: the publisher's and the
    # sink's bar checks refuse them (tests/unit/test_instruments.py).
    assert good == {"2026-11-27", "2026-11-20", "2099-01-02", "2026-11-19"}
    assert reasons == [
        "SPY 2026-11-21: missing 4. close",
        "SPY 2026-11-24: open '-595.00' is not positive",
        "SPY 2026-11-25: volume '0' is not positive",
        "SPY 2026-11-26: close 'n/a' is not a number",
    ]
    assert all(b"AVKEY123" not in r.original for r in out if isinstance(r, Rejected))


async def test_error_message_is_a_dead_letter_and_the_next_symbol_goes_on(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        from tests.unit.ingestor.ingestor_kit import recorded

        if request.url.params["symbol"] == "NOPE":
            return recorded("alphavantage/error_invalid_symbol.json")
        return recorded("alphavantage/daily_IBM_compact.json")

    routes = Routes({QUERY: answer})
    source = _source(client_for(routes), policy, codes={"NOPE": "NOPE", "IBM": "IBM"})
    out = await _all(source, ["NOPE", "IBM"])
    [rejected] = [r for r in out if isinstance(r, Rejected)]
    assert rejected.reason.startswith("NOPE: provider error: Invalid API call")
    assert len([b for b in out if isinstance(b, PriceBar)]) == 5


async def test_a_note_is_waited_on_and_retried_never_stored(
    client_for: ClientFor, policy: RetryPolicy, clock: FakeClock
) -> None:
    routes = Routes(
        {QUERY: ["alphavantage/note_rate_limit.json", "alphavantage/daily_IBM_compact.json"]}
    )
    out = await _all(_source(client_for(routes), policy), ["IBM"])
    assert routes.total == 2
    assert clock.waits == [60.0]
    assert len(out) == 5
    assert all(isinstance(b, PriceBar) for b in out)


async def test_a_note_that_persists_stops_with_retry_later(
    client_for: ClientFor, policy: RetryPolicy, clock: FakeClock
) -> None:
    routes = Routes({QUERY: "alphavantage/note_rate_limit.json"})
    with pytest.raises(Throttled, match="still throttled after 3 tries"):
        await _all(_source(client_for(routes), policy), ["IBM"])
    assert routes.total == 3
    assert clock.waits == [60.0, 60.0]


async def test_premium_information_is_recorded_for_that_symbol_only(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        from tests.unit.ingestor.ingestor_kit import recorded

        if request.url.params["symbol"] == "SPY":
            return recorded("alphavantage/information_premium.json")
        return recorded("alphavantage/daily_IBM_compact.json")

    routes = Routes({QUERY: answer})
    source = _source(client_for(routes), policy)
    out = await _all(source, ["SPY", "IBM"])
    assert len(out) == 5
    assert all(isinstance(b, PriceBar) and b.symbol == "IBM" for b in out)
    [failure] = source.failures
    assert failure.startswith("SPY: not served on this plan: Thank you for using Alpha Vantage")


async def test_the_daily_limit_answer_spends_the_budget(
    client_for: ClientFor, policy: RetryPolicy, tmp_path: Path
) -> None:
    budget = RequestBudget(tmp_path / "budget.json", {"alphavantage": 25})
    routes = Routes({QUERY: "alphavantage/information_daily_limit.json"})
    with pytest.raises(BudgetExhausted, match="the free plan allows 25 a day") as info:
        await _all(_source(client_for(routes), policy, budget=budget), ["IBM"])
    assert "AVKEY123" not in str(info.value)
    assert "DEMOKEY123" in str(info.value)
    assert budget.status("alphavantage").left == 0
    # The next run does not even ask.
    with pytest.raises(BudgetExhausted, match="used up"):
        await _all(_source(client_for(routes), policy, budget=budget), ["IBM"])
    assert routes.total == 1


async def test_the_budget_counts_every_request_and_refuses_the_26th(
    client_for: ClientFor, policy: RetryPolicy, tmp_path: Path
) -> None:
    today = [date(2026, 11, 30)]
    budget = RequestBudget(tmp_path / "b.json", {"alphavantage": 25}, today=lambda: today[0])
    routes = Routes({QUERY: "alphavantage/daily_IBM_compact.json"})
    source = _source(client_for(routes), policy, budget=budget)
    for _ in range(25):
        await _all(source, ["IBM"])
    assert budget.status("alphavantage").used == 25
    with pytest.raises(BudgetExhausted):
        await _all(source, ["IBM"])
    assert routes.total == 25
    today[0] = date(2026, 12, 1)  # a new UTC day, a new budget
    assert budget.status("alphavantage").left == 25
    await _all(source, ["IBM"])
    assert routes.total == 26


async def test_html_instead_of_json_is_rejected(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({QUERY: "common/bad_gateway.html"})
    [item] = await _all(_source(client_for(routes), policy), ["IBM"])
    assert isinstance(item, Rejected)
    assert "HTML" in item.reason


def test_a_key_is_required(policy: RetryPolicy) -> None:
    with pytest.raises(ValueError, match="alphavantage needs an API key"):
        AlphaVantageSource(httpx.AsyncClient(), None, policy)

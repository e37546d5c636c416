"""CoinGecko on recorded answers (crypto)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from metalcast_core import PriceTick
from metalcast_ingestor.sources import (
    CoinGeckoSource,
    HistoryNotSupported,
    Rejected,
    RetryPolicy,
    SourceUnavailable,
)
from tests.unit.ingestor.ingestor_kit import FakeClock, Routes

ClientFor = Callable[[Routes], httpx.AsyncClient]
CHART = "/api/v3/coins/bitcoin/market_chart/range"


async def test_latest(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({"/api/v3/simple/price": "coingecko/simple_price.json"})
    out = await CoinGeckoSource(client_for(routes), retry=policy).latest(["BTC", "ETH"])
    ticks = {t.symbol: t for t in out if isinstance(t, PriceTick)}
    assert ticks["BTC"].price == 96812.41
    assert ticks["ETH"].price == 3449.87
    assert ticks["BTC"].observed_at == datetime.fromtimestamp(1735826690, UTC)
    params = routes.requests[0].url.params
    assert params["ids"] == "bitcoin,ethereum"
    assert params["vs_currencies"] == "usd"
    assert params["include_last_updated_at"] == "true"
    assert "x-cg-demo-api-key" not in routes.requests[0].headers


async def test_demo_key_goes_in_the_header(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({"/api/v3/simple/price": "coingecko/simple_price.json"})
    await CoinGeckoSource(client_for(routes), "CG-demo", policy).latest(["BTC"])
    assert routes.requests[0].headers["x-cg-demo-api-key"] == "CG-demo"


async def test_missing_coin_and_bad_values(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({"/api/v3/simple/price": "coingecko/simple_price_missing_eth.json"})
    out = await CoinGeckoSource(client_for(routes), retry=policy).latest(["BTC", "ETH"])
    assert isinstance(out[0], PriceTick)
    assert isinstance(out[1], Rejected)
    assert out[1].reason == "ETH: missing from the answer"
    routes = Routes({"/api/v3/simple/price": "coingecko/simple_price_bad.json"})
    out = await CoinGeckoSource(client_for(routes), retry=policy).latest(["BTC", "ETH"])
    assert [x.reason for x in out if isinstance(x, Rejected)] == [
        "BTC: price 0 is not finite and positive",
        "ETH: price '3449.87' is not a number",
    ]


async def test_cloudflare_html_is_rejected(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({"/api/v3/simple/price": "coingecko/cloudflare_block.html"})
    [item] = await CoinGeckoSource(client_for(routes), retry=policy).latest(["BTC"])
    assert isinstance(item, Rejected)
    assert item.original.startswith(b"<!DOCTYPE html>")


async def test_throttled_then_gives_up_after_retry_after_waits(
    client_for: ClientFor, clock: FakeClock
) -> None:
    policy = RetryPolicy(
        attempts=3, retry_after_cap=120, min_interval=0, sleep=clock.sleep, clock=clock.clock
    )
    routes = Routes({"/api/v3/simple/price": "coingecko/rate_limited.response.json"})
    with pytest.raises(SourceUnavailable, match=r"rate limited \(HTTP 429\)"):
        await CoinGeckoSource(client_for(routes), retry=policy).latest(["BTC"])
    assert routes.total == 3
    assert clock.waits == [60.0, 60.0]


async def test_history_range(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({CHART: "coingecko/market_chart_range_bitcoin.json"})
    source = CoinGeckoSource(client_for(routes), retry=policy)
    start = datetime(2025, 1, 2, tzinfo=UTC)
    chunks = [c async for c in source.history(["BTC"], start, start + timedelta(hours=3))]
    assert len(chunks) == 1
    ticks = [t for t in chunks[0] if isinstance(t, PriceTick)]
    assert [t.price for t in ticks] == [94591.82, 94720.05, 94655.3]  # the 4th is past `end`
    assert ticks[0].observed_at == start
    assert ticks[1].observed_at == datetime(2025, 1, 2, 1, 0, 20, 412000, tzinfo=UTC)
    params = routes.requests[0].url.params
    assert params["vs_currency"] == "usd"
    assert int(params["from"]) == int(start.timestamp())


async def test_history_is_hourly_within_90_days_and_daily_before(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({CHART: "coingecko/market_chart_range_bitcoin.json"})
    source = CoinGeckoSource(client_for(routes), retry=policy)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=300)
    chunks = [c async for c in source.history(["BTC"], start, end)]
    # One daily request for the 210 days before the last 90, then 90-day windows (hourly).
    assert len(chunks) == routes.total == 2
    first, second = (r.url.params for r in routes.requests)
    assert first["interval"] == "daily"
    assert int(first["from"]) == int(start.timestamp())
    assert "interval" not in second
    assert int(second["to"]) == int(end.timestamp())
    assert int(second["to"]) - int(second["from"]) <= 90 * 86400 + 60


async def test_history_windows_of_90_days(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({CHART: "coingecko/market_chart_range_bitcoin.json"})
    source = CoinGeckoSource(client_for(routes), retry=policy)
    end = datetime.now(UTC) + timedelta(days=100)  # a range reaching past now, all recent
    chunks = [c async for c in source.history(["BTC"], end - timedelta(days=150), end)]
    assert len(chunks) == routes.total == 2  # 90 + 60 days, hourly
    assert all("interval" not in r.url.params for r in routes.requests)


async def test_history_beyond_365_days_is_a_failure_naming_the_plan(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        from tests.unit.ingestor.ingestor_kit import recorded

        if request.url.params.get("interval") == "daily":
            return recorded("coingecko/error_10012.response.json")
        return recorded("coingecko/market_chart_range_bitcoin.json")

    routes = Routes({CHART: answer})
    source = CoinGeckoSource(client_for(routes), retry=policy)
    end = datetime.now(UTC)
    chunks = [c async for c in source.history(["BTC"], end - timedelta(days=400), end)]
    assert routes.total == 2  # the 401 is not retried; the recent 90 days are still asked
    assert len(chunks) == 1  # what the plan serves lands
    [failure] = source.failures
    assert "keyless Public plan serves only the last 365 days" in failure
    assert "error 10012" in failure
    keyed = CoinGeckoSource(client_for(routes), "CG-demo", policy)
    _ = [c async for c in keyed.history(["BTC"], end - timedelta(days=400), end)]
    assert "CoinGecko's Demo plan" in keyed.failures[0]


async def test_the_range_limit_can_still_be_raised_for_callers_that_want_it() -> None:
    source = CoinGeckoSource(httpx.AsyncClient())
    body = recorded_body("coingecko/error_10012.response.json")
    with pytest.raises(HistoryNotSupported, match="365 days"):
        source._raise_if_range_limit(body, datetime(2020, 1, 1, tzinfo=UTC))


async def test_an_unknown_coin_id_is_recorded_and_the_next_coin_goes_on(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes(
        {
            "/api/v3/coins/notacoin/market_chart/range": "coingecko/coin_not_found.response.json",
            CHART: "coingecko/market_chart_range_bitcoin.json",
        }
    )
    source = CoinGeckoSource(
        client_for(routes), retry=policy, codes={"NOPE": "notacoin", "BTC": "bitcoin"}
    )
    end = datetime.now(UTC)
    chunks = [c async for c in source.history(["NOPE", "BTC"], end - timedelta(days=2), end)]
    assert len(chunks) == 1
    assert source.failures == [
        "NOPE: CoinGecko knows no coin 'notacoin' (HTTP 404): check the coingecko id in the "
        "instrument catalogue"
    ]


async def test_429_is_retried_after_retry_after_then_the_history_lands(
    client_for: ClientFor, clock: FakeClock
) -> None:
    policy = RetryPolicy(attempts=3, min_interval=0, sleep=clock.sleep, clock=clock.clock)
    routes = Routes(
        {
            CHART: [
                "coingecko/rate_limited.response.json",
                "coingecko/market_chart_range_bitcoin.json",
            ]
        }
    )
    source = CoinGeckoSource(client_for(routes), retry=policy)
    start = datetime(2025, 1, 2, tzinfo=UTC)
    chunks = [c async for c in source.history(["BTC"], start, start + timedelta(hours=3))]
    assert clock.waits == [60.0]
    assert len([t for t in chunks[0] if isinstance(t, PriceTick)]) == 3


def recorded_body(ref: str) -> bytes:
    from tests.unit.ingestor.ingestor_kit import recorded

    return recorded(ref).content


async def test_metals_are_not_offered(client_for: ClientFor, policy: RetryPolicy) -> None:
    with pytest.raises(ValueError, match="coingecko does not offer XAU"):
        await CoinGeckoSource(client_for(Routes({})), retry=policy).latest(["XAU"])

"""gold-api.com on recorded answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from metalcast_core import PriceTick
from metalcast_ingestor.sources import (
    GoldApiSource,
    HistoryNotSupported,
    ProviderHTTPError,
    Rejected,
    RetryPolicy,
)
from tests.unit.ingestor.ingestor_kit import FIXTURES, Routes

ClientFor = Callable[[Routes], httpx.AsyncClient]
METALS = ["XAU", "XAG", "XPT", "XPD"]
UPDATED = datetime(2025, 1, 2, 14, 5, 11, tzinfo=UTC)


async def test_latest_parses_every_metal(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({f"/price/{s}": f"gold-api/price_{s}.json" for s in METALS})
    out = await GoldApiSource(client_for(routes), retry=policy).latest(METALS)
    assert all(isinstance(t, PriceTick) for t in out)
    ticks = [t for t in out if isinstance(t, PriceTick)]
    assert {t.symbol: t.price for t in ticks} == {
        "XAU": pytest.approx(2651.300049),
        "XAG": pytest.approx(29.684999),
        "XPT": pytest.approx(923.5),
        "XPD": pytest.approx(912.299988),
    }
    for tick in ticks:
        assert tick.source == "gold-api"
        assert tick.instrument == "spot"
        assert tick.currency == "USD"
        assert tick.observed_at == UPDATED  # the provider's updatedAt, not the fetch time
        assert tick.raw is not None
        assert tick.raw["symbol"] == tick.symbol
    assert [r.url.path for r in routes.requests] == [f"/price/{s}" for s in METALS]
    assert all("x-api-key" not in r.headers for r in routes.requests)  # keyless


async def test_latest_crypto(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({"/price/BTC": "gold-api/price_BTC.json"})
    [tick] = await GoldApiSource(client_for(routes), retry=policy).latest(["BTC"])
    assert isinstance(tick, PriceTick)
    assert tick.price == pytest.approx(96800.12)


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("price_XAU_zero.json", "XAU: price 0 is not finite and positive"),
        ("price_XAU_negative.json", "XAU: price -2651.3 is not finite and positive"),
        ("price_XAU_nan.json", "XAU: price nan is not finite and positive"),
        ("price_XAU_string.json", "XAU: price '2651.30' is not a number"),
        ("price_XAU_no_price.json", "XAU: answer has no price"),
        ("price_XAU_wrong_symbol.json", "XAU: answer is for 'XAG'"),
    ],
)
async def test_bad_answers_are_rejected_with_the_reason(
    client_for: ClientFor, policy: RetryPolicy, fixture: str, reason: str
) -> None:
    routes = Routes({"/price/XAU": f"gold-api/{fixture}"})
    [item] = await GoldApiSource(client_for(routes), retry=policy).latest(["XAU"])
    assert isinstance(item, Rejected)
    assert item.source == "gold-api"
    assert item.reason == reason
    assert json.loads(item.original)["symbol"] in {"XAU", "XAG"}  # the answer, for the DLQ
    assert routes.total == 1  # a bad value is not retried


async def test_one_bad_metal_does_not_spoil_the_others(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes(
        {"/price/XAU": "gold-api/price_XAU_zero.json", "/price/XAG": "gold-api/price_XAG.json"}
    )
    out = await GoldApiSource(client_for(routes), retry=policy).latest(["XAU", "XAG"])
    assert [type(x).__name__ for x in out] == ["Rejected", "PriceTick"]


async def test_without_updated_at_the_fetch_time_is_used(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    body = {"currency": "USD", "price": 2650.1, "symbol": "XAU"}
    routes = Routes({"/price/XAU": lambda request: httpx.Response(200, json=body)})
    before = datetime.now(UTC)
    [tick] = await GoldApiSource(client_for(routes), retry=policy).latest(["XAU"])
    assert isinstance(tick, PriceTick)
    assert before <= tick.observed_at <= datetime.now(UTC)


async def test_unknown_symbol_is_a_configuration_error(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({})
    with pytest.raises(ValueError, match="gold-api does not offer DOGE"):
        await GoldApiSource(client_for(routes), retry=policy).latest(["DOGE"])
    assert routes.total == 0


async def test_history_needs_a_key(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({})
    source = GoldApiSource(client_for(routes), retry=policy)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(HistoryNotSupported, match="needs an API key"):
        async for _ in source.history(["XAU"], start, start + timedelta(days=3)):
            pass
    assert routes.total == 0


async def test_history_with_a_key(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({"/history": "gold-api/history_XAU_day.json"})
    source = GoldApiSource(client_for(routes), "hist-key", policy)
    start, end = datetime(2025, 1, 2, tzinfo=UTC), datetime(2025, 1, 5, tzinfo=UTC)
    chunks = [chunk async for chunk in source.history(["XAU"], start, end)]
    assert len(chunks) == 1  # one call: 3 days fit in one window
    ticks = [x for x in chunks[0] if isinstance(x, PriceTick)]
    rejected = [x for x in chunks[0] if isinstance(x, Rejected)]
    # 2025-01-01 is outside [start, end) and dropped by the filter; prices were strings
    assert [(t.observed_at.day, t.price) for t in ticks] == [(2, 2652.410034), (3, 2640.119995)]
    assert [r.reason for r in rejected] == ["XAU: price 'not-a-number' is not a number"]
    request = routes.requests[0]
    assert request.headers["x-api-key"] == "hist-key"
    assert request.url.params["symbol"] == "XAU"
    assert request.url.params["groupBy"] == "day"
    assert int(request.url.params["startTimestamp"]) == int(start.timestamp())
    assert int(request.url.params["endTimestamp"]) == int(end.timestamp()) - 1


async def test_history_bad_key_is_unavailable_without_retry(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({"/history": "gold-api/history_unauthorized.response.json"})
    source = GoldApiSource(client_for(routes), "wrong", policy)
    start = datetime(2025, 1, 2, tzinfo=UTC)
    with pytest.raises(ProviderHTTPError, match="HTTP 401"):
        async for _ in source.history(["XAU"], start, start + timedelta(days=1)):
            pass
    assert routes.total == 1


def test_fixtures_are_where_the_tests_expect_them() -> None:
    assert (FIXTURES / "gold-api" / "price_XAU.json").is_file()

"""metalpriceapi.com on recorded answers: USD per ounce, success:false, daily history."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime

import httpx
import pytest

from metalcast_core import PriceTick
from metalcast_ingestor.sources import (
    MetalpriceApiSource,
    Rejected,
    RetryPolicy,
    SourceUnavailable,
)
from tests.unit.ingestor.ingestor_kit import Routes

ClientFor = Callable[[Routes], httpx.AsyncClient]
METALS = ["XAU", "XAG", "XPT", "XPD"]


def _ticks(items: list[PriceTick | Rejected]) -> dict[str, PriceTick]:
    return {t.symbol: t for t in items if isinstance(t, PriceTick)}


async def test_latest_uses_usd_per_ounce(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({"/v1/latest": "metalpriceapi/latest.json"})
    out = await MetalpriceApiSource(client_for(routes), "k", policy).latest(METALS)
    ticks = _ticks(out)
    assert len(out) == len(ticks) == 4
    assert {s: t.price for s, t in ticks.items()} == {
        "XAU": 2651.32,
        "XAG": 29.68,
        "XPT": 923.5,
        "XPD": 912.3,
    }
    assert all(t.observed_at == datetime.fromtimestamp(1735826400, UTC) for t in ticks.values())
    assert ticks["XAU"].raw is not None
    assert ticks["XAU"].raw["price_field"] == "USDXAU"
    params = routes.requests[0].url.params
    assert params["base"] == "USD"
    assert params["currencies"] == "XAU,XAG,XPT,XPD"
    assert params["api_key"] == "k"


async def test_only_ounces_per_dollar_are_inverted(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({"/v1/latest": "metalpriceapi/latest_ounces_only.json"})
    ticks = _ticks(await MetalpriceApiSource(client_for(routes), "k", policy).latest(METALS))
    assert ticks["XAU"].price == pytest.approx(2000.0)  # rates.XAU 0.0005 oz per USD
    assert ticks["XAG"].price == pytest.approx(25.0)
    assert ticks["XPT"].price == pytest.approx(1000.0)
    assert ticks["XPD"].price == pytest.approx(800.0)
    assert ticks["XAU"].raw is not None
    assert ticks["XAU"].raw["price_field"] == "1/XAU"


async def test_missing_metal_is_rejected_others_kept(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({"/v1/latest": "metalpriceapi/latest_missing_metal.json"})
    out = await MetalpriceApiSource(client_for(routes), "k", policy).latest(METALS)
    assert sorted(_ticks(out)) == ["XAG", "XAU", "XPT"]
    [rejected] = [x for x in out if isinstance(x, Rejected)]
    assert rejected.reason == "XPD: missing from the answer (neither USDXPD nor XPD)"
    assert json.loads(rejected.original)["success"] is True


async def test_bad_values_are_rejected(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({"/v1/latest": "metalpriceapi/latest_bad_values.json"})
    out = await MetalpriceApiSource(client_for(routes), "k", policy).latest(METALS)
    assert all(isinstance(x, Rejected) for x in out)
    assert [x.reason for x in out if isinstance(x, Rejected)] == [
        "XAU: price 0 is not finite and positive",
        "XAG: price -29.68 is not finite and positive",
        "XPT: price '923.50' is not a number",
        "XPD: price nan is not finite and positive",
    ]


@pytest.mark.parametrize("fixture", ["error_invalid_key.json", "error_quota.json"])
async def test_success_false_with_http_200_is_rejected(
    client_for: ClientFor, policy: RetryPolicy, fixture: str
) -> None:
    routes = Routes({"/v1/latest": f"metalpriceapi/{fixture}"})
    [item] = await MetalpriceApiSource(client_for(routes), "k", policy).latest(METALS)
    assert isinstance(item, Rejected)
    assert item.reason.startswith("provider error (HTTP 200): ")
    assert '"statusCode": 10' in item.reason
    assert json.loads(item.original)["success"] is False
    assert routes.total == 1


async def test_5xx_exhausts_the_attempts(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({"/v1/latest": "metalpriceapi/service_unavailable.response.json"})
    with pytest.raises(SourceUnavailable, match="after 3 attempt"):
        await MetalpriceApiSource(client_for(routes), "k", policy).latest(METALS)
    assert routes.total == 3


async def test_a_key_is_required(client_for: ClientFor) -> None:
    with pytest.raises(ValueError, match="needs an API key"):
        MetalpriceApiSource(client_for(Routes({})), None)


async def test_history_via_timeframe(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({"/v1/timeframe": "metalpriceapi/timeframe.json"})
    source = MetalpriceApiSource(client_for(routes), "k", policy)
    start, end = datetime(2024, 4, 29, tzinfo=UTC), datetime(2024, 5, 2, tzinfo=UTC)
    chunks = [c async for c in source.history(METALS, start, end)]
    assert len(chunks) == 1
    items = chunks[0]
    ticks = [x for x in items if isinstance(x, PriceTick)]
    assert len(ticks) == 11  # 3 days x 4 metals, XPD missing on 2024-05-01
    assert {t.observed_at.date() for t in ticks} == {
        date(2024, 4, 29),
        date(2024, 4, 30),
        date(2024, 5, 1),
    }
    by_key = {(t.observed_at.date(), t.symbol): t.price for t in ticks}
    assert by_key[(date(2024, 4, 30), "XAU")] == 2286.25
    assert all(t.observed_at.hour == 0 and t.observed_at.tzinfo is not None for t in ticks)
    [missing] = [x for x in items if isinstance(x, Rejected)]
    assert missing.reason.startswith("XPD: missing")
    params = routes.requests[0].url.params
    assert (params["start_date"], params["end_date"]) == ("2024-04-29", "2024-05-01")


async def test_history_day_by_day(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({"/v1/2024-04-30": "metalpriceapi/historical_2024-04-30.json"})
    source = MetalpriceApiSource(client_for(routes), "k", policy, use_timeframe=False)
    start, end = datetime(2024, 4, 30, tzinfo=UTC), datetime(2024, 5, 1, tzinfo=UTC)
    chunks = [c async for c in source.history(METALS, start, end)]
    assert len(chunks) == 1
    ticks = _ticks(chunks[0])
    assert ticks["XAU"].price == 2286.25
    assert ticks["XAU"].observed_at == datetime(2024, 4, 30, tzinfo=UTC)


async def test_history_error_answer_becomes_a_rejected_chunk(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({"/v1/timeframe": "metalpriceapi/error_invalid_key.json"})
    source = MetalpriceApiSource(client_for(routes), "k", policy)
    start, end = datetime(2024, 4, 29, tzinfo=UTC), datetime(2024, 5, 2, tzinfo=UTC)
    chunks = [c async for c in source.history(["XAU"], start, end)]
    assert len(chunks) == 1
    assert isinstance(chunks[0][0], Rejected)

"""metals-api.com on recorded answers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import httpx
import pytest

from metalcast_core import PriceTick
from metalcast_ingestor.sources import MetalsApiSource, Rejected, RetryPolicy, SourceUnavailable
from tests.unit.ingestor.ingestor_kit import Routes

ClientFor = Callable[[Routes], httpx.AsyncClient]
METALS = ["XAU", "XAG", "XPT", "XPD"]


async def test_latest(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({"/api/latest": "metals-api/latest.json"})
    out = await MetalsApiSource(client_for(routes), "acc", policy).latest(METALS)
    ticks = {t.symbol: t for t in out if isinstance(t, PriceTick)}
    assert {s: t.price for s, t in ticks.items()} == {
        "XAU": 2199.5135616,
        "XAG": 24.8679,
        "XPT": 916.607,
        "XPD": 1023.0,
    }
    assert ticks["XAU"].observed_at == datetime.fromtimestamp(1711028580, UTC)
    assert ticks["XAU"].source == "metals-api"
    params = routes.requests[0].url.params
    assert params["access_key"] == "acc"
    assert params["symbols"] == "XAU,XAG,XPT,XPD"
    assert params["base"] == "USD"


async def test_the_documented_example_lacks_silver(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({"/api/latest": "metals-api/latest_missing_xag.json"})
    out = await MetalsApiSource(client_for(routes), "acc", policy).latest(METALS)
    assert [type(x).__name__ for x in out] == ["PriceTick", "Rejected", "PriceTick", "PriceTick"]
    assert isinstance(out[1], Rejected)
    assert out[1].reason == "XAG: missing from the answer (neither USDXAG nor XAG)"


@pytest.mark.parametrize("fixture", ["error_invalid_key.json", "error_end_date_today.json"])
async def test_success_false_is_rejected(
    client_for: ClientFor, policy: RetryPolicy, fixture: str
) -> None:
    routes = Routes({"/api/latest": f"metals-api/{fixture}"})
    [item] = await MetalsApiSource(client_for(routes), "acc", policy).latest(METALS)
    assert isinstance(item, Rejected)
    assert "provider error (HTTP 200)" in item.reason
    assert '"code": ' in item.reason
    assert b"acc" not in item.original


async def test_server_error_is_retried_then_unavailable(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({"/api/latest": "metals-api/server_error.response.json"})
    with pytest.raises(SourceUnavailable, match="metals-api: gave up on /api/latest after 3"):
        await MetalsApiSource(client_for(routes), "acc", policy).latest(METALS)
    assert routes.total == 3


async def test_timeseries_one_symbol_per_call_never_today(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({"/api/timeseries": "metals-api/timeseries_XAU.json"})
    today = datetime(2024, 3, 20, 15, tzinfo=UTC)
    source = MetalsApiSource(client_for(routes), "acc", policy, now=lambda: today)
    start, end = datetime(2024, 3, 18, tzinfo=UTC), datetime(2024, 3, 25, tzinfo=UTC)
    chunks = [c async for c in source.history(["XAU", "XAG"], start, end)]
    assert len(chunks) == 2  # one call per symbol
    assert [r.url.params["symbols"] for r in routes.requests] == ["XAU", "XAG"]
    for request in routes.requests:
        assert request.url.params["start_date"] == "2024-03-18"
        assert request.url.params["end_date"] == "2024-03-19"  # clipped before today
    xau = [t for t in chunks[0] if isinstance(t, PriceTick)]
    assert [(t.observed_at.date(), t.symbol) for t in xau] == [
        (date(2024, 3, 18), "XAU"),
        (date(2024, 3, 19), "XAU"),
    ]
    assert xau[0].price == pytest.approx(1 / 0.00046128)  # only the inverse that day
    assert xau[1].price == 2162.86
    # the recorded answer holds no silver: every XAG day is a Rejected, not a silent gap
    assert all(isinstance(x, Rejected) and "XAG" in x.reason for x in chunks[1])


async def test_timeseries_windows(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({"/api/timeseries": "metals-api/timeseries_XAU.json"})
    today = datetime(2024, 12, 31, tzinfo=UTC)
    source = MetalsApiSource(
        client_for(routes), "acc", policy, timeseries_days=30, now=lambda: today
    )
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)
    async for _ in source.history(["XAU"], start, end):
        pass
    windows = [(r.url.params["start_date"], r.url.params["end_date"]) for r in routes.requests]
    assert windows == [("2024-01-01", "2024-01-30"), ("2024-01-31", "2024-02-29")]

"""goldapi.io on recorded answers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from metalcast_core import PriceTick
from metalcast_ingestor.sources import (
    GoldApiIoSource,
    ProviderHTTPError,
    Rejected,
    RetryPolicy,
)
from tests.unit.ingestor.ingestor_kit import Routes

ClientFor = Callable[[Routes], httpx.AsyncClient]


async def test_latest(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes(
        {"/api/XAU/USD": "goldapi-io/XAU_USD.json", "/api/XAG/USD": "goldapi-io/XAG_USD.json"}
    )
    out = await GoldApiIoSource(client_for(routes), "tok", policy).latest(["XAU", "XAG"])
    ticks = {t.symbol: t for t in out if isinstance(t, PriceTick)}
    assert ticks["XAU"].price == 1797.48
    assert ticks["XAG"].price == 23.684
    assert ticks["XAG"].observed_at == datetime.fromtimestamp(1670742767, UTC)
    assert all(r.headers["x-access-token"] == "tok" for r in routes.requests)
    assert all("tok" not in str(r.url) for r in routes.requests)


async def test_string_price_is_rejected(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({"/api/XPT/USD": "goldapi-io/XPT_USD_string.json"})
    [item] = await GoldApiIoSource(client_for(routes), "tok", policy).latest(["XPT"])
    assert isinstance(item, Rejected)
    assert item.reason == "XPT: price '1021.5' is not a number"


async def test_error_body_is_rejected(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({"/api/XAU/USD": "goldapi-io/error_invalid_key.json"})
    [item] = await GoldApiIoSource(client_for(routes), "tok", policy).latest(["XAU"])
    assert isinstance(item, Rejected)
    assert item.reason == 'XAU: provider error "Invalid API Key"'


async def test_forbidden_is_not_retried(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({"/api/XAU/USD": "goldapi-io/forbidden.response.json"})
    with pytest.raises(ProviderHTTPError, match="goldapi-io: HTTP 403 on /api/XAU/USD"):
        await GoldApiIoSource(client_for(routes), "tok", policy).latest(["XAU"])
    assert routes.total == 1


async def test_history_one_chunk_per_day_millisecond_timestamps(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes(
        {
            "/api/XAU/USD/20240105": "goldapi-io/XAU_USD_20240105.json",
            "/api/XAG/USD/20240105": "goldapi-io/XAG_USD_20240105.json",
        }
    )
    source = GoldApiIoSource(client_for(routes), "tok", policy)
    start, end = datetime(2024, 1, 5, tzinfo=UTC), datetime(2024, 1, 6, tzinfo=UTC)
    chunks = [c async for c in source.history(["XAU", "XAG"], start, end)]
    assert len(chunks) == 1
    ticks = [t for t in chunks[0] if isinstance(t, PriceTick)]
    assert [(t.symbol, t.price) for t in ticks] == [("XAU", 2045.47), ("XAG", 23.2)]
    assert all(t.observed_at == datetime(2024, 1, 5, tzinfo=UTC) for t in ticks)

"""The shared HTTP behaviour: retries, backoff, Retry-After, pacing, error mapping, no key leaks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from metalcast_ingestor.sources import (
    GoldApiIoSource,
    GoldApiSource,
    MetalpriceApiSource,
    ProviderHTTPError,
    Rejected,
    RetryPolicy,
    SourceUnavailable,
    parse_retry_after,
)
from metalcast_ingestor.sources._http import HttpFetcher
from tests.unit.ingestor.ingestor_kit import FakeClock, Routes

ClientFor = Callable[[Routes], httpx.AsyncClient]
XAU = "/price/XAU"


async def test_5xx_then_success_retries_with_exponential_backoff(
    client_for: ClientFor, policy: RetryPolicy, clock: FakeClock
) -> None:
    routes = Routes({XAU: ["gold-api/bad_gateway.response.json"] * 2 + ["gold-api/price_XAU.json"]})
    source = GoldApiSource(client_for(routes), retry=policy)
    [tick] = await source.latest(["XAU"])
    assert not isinstance(tick, Rejected)
    assert tick.price == pytest.approx(2651.300049)
    assert routes.counts[XAU] == 3
    assert clock.waits == [1.0, 2.0]  # backoff_initial, then doubled (jitter 0)


async def test_5xx_every_time_gives_up_after_the_attempts(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({XAU: "gold-api/bad_gateway.response.json"})
    source = GoldApiSource(client_for(routes), retry=policy)
    with pytest.raises(SourceUnavailable, match=r"gold-api: gave up on /price/XAU after 3") as info:
        await source.latest(["XAU"])
    assert "HTTP 502" in str(info.value)
    assert routes.counts[XAU] == 3


@pytest.mark.parametrize(
    "error", [httpx.ReadTimeout("timed out"), httpx.ConnectError("connection refused")]
)
async def test_timeouts_and_connect_errors_are_retried(
    client_for: ClientFor, policy: RetryPolicy, error: Exception
) -> None:
    routes = Routes({XAU: error})
    source = GoldApiSource(client_for(routes), retry=policy)
    with pytest.raises(SourceUnavailable, match=type(error).__name__):
        await source.latest(["XAU"])
    assert routes.counts[XAU] == 3


async def test_timeout_then_success(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({XAU: [httpx.ConnectTimeout("slow"), "gold-api/price_XAU.json"]})
    [tick] = await GoldApiSource(client_for(routes), retry=policy).latest(["XAU"])
    assert not isinstance(tick, Rejected)
    assert routes.counts[XAU] == 2


async def test_429_retry_after_seconds_is_honoured(
    client_for: ClientFor, policy: RetryPolicy, clock: FakeClock
) -> None:
    routes = Routes({XAU: ["gold-api/rate_limited.response.json", "gold-api/price_XAU.json"]})
    [tick] = await GoldApiSource(client_for(routes), retry=policy).latest(["XAU"])
    assert not isinstance(tick, Rejected)
    assert clock.waits == [7.0]  # the header's value, not the 1 s backoff
    assert routes.counts[XAU] == 2


async def test_429_retry_after_is_capped(client_for: ClientFor, clock: FakeClock) -> None:
    capped = RetryPolicy(
        attempts=2, retry_after_cap=30.0, min_interval=0, sleep=clock.sleep, clock=clock.clock
    )
    routes = Routes({"/api/XAU/USD": "goldapi-io/rate_limited.response.json"})  # Retry-After 3600
    source = GoldApiIoSource(client_for(routes), "k", capped)
    with pytest.raises(SourceUnavailable, match=r"rate limited \(HTTP 429\)"):
        await source.latest(["XAU"])
    assert clock.waits == [30.0]
    assert routes.counts["/api/XAU/USD"] == 2


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 2, 14, 5, 11, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("Thu, 02 Jan 2025 14:06:11 GMT", now) == 60.0
    assert parse_retry_after("Thu, 02 Jan 2025 14:00:00 GMT", now) == 0.0  # in the past
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


async def test_429_with_an_http_date_retry_after(
    client_for: ClientFor, policy: RetryPolicy, clock: FakeClock
) -> None:
    # The recorded date lies in the past by now: wait 0, then succeed.
    answers = ["metalpriceapi/rate_limited_date.response.json", "metalpriceapi/latest.json"]
    routes = Routes({"/v1/latest": answers})
    out = await MetalpriceApiSource(client_for(routes), "k", policy).latest(["XAU"])
    assert [type(x).__name__ for x in out] == ["PriceTick"]
    assert clock.waits == [0.0]


@pytest.mark.parametrize(
    ("fixture", "status", "hint"),
    [
        ("metalpriceapi/unauthorized.response.json", 401, "unauthorised: check the API key"),
        ("metalpriceapi/forbidden.response.json", 403, "forbidden: check the API key and the plan"),
    ],
)
async def test_401_403_are_not_retried_and_never_leak_the_key(
    client_for: ClientFor,
    policy: RetryPolicy,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    fixture: str,
    status: int,
    hint: str,
) -> None:
    routes = Routes({"/v1/latest": fixture})
    source = MetalpriceApiSource(client_for(routes), "KEY-ECHOED", policy)
    # Our own loggers only: httpx logs request URLs at INFO (queries included), which is why
    # configure_logging() keeps the httpx logger at WARNING.
    with (
        caplog.at_level(logging.DEBUG, "metalcast_ingestor"),
        pytest.raises(ProviderHTTPError) as info,
    ):
        await source.latest(["XAU"])
    assert routes.counts["/v1/latest"] == 1
    assert clock.waits == []
    assert info.value.status_code == status
    message = str(info.value)
    assert message.startswith(f"metalpriceapi: HTTP {status} on /v1/latest ({hint})")
    assert "KEY-ECHOED" not in message  # the 401 body echoes the key: scrubbed
    assert b"KEY-ECHOED" not in info.value.body
    assert "api_key" not in message
    assert "KEY-ECHOED" not in caplog.text
    assert "KEY-ECHOED" not in repr(source)
    assert routes.requests[0].url.params["api_key"] == "KEY-ECHOED"  # it was sent, though


async def test_404_is_not_retried(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({XAU: "gold-api/not_found.response.json"})
    with pytest.raises(ProviderHTTPError, match=r"HTTP 404 on /price/XAU \(not found\)"):
        await GoldApiSource(client_for(routes), retry=policy).latest(["XAU"])
    assert routes.counts[XAU] == 1


async def test_retry_logs_name_provider_and_status_not_the_query(
    client_for: ClientFor, policy: RetryPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    routes = Routes({"/v1/latest": "metalpriceapi/service_unavailable.response.json"})
    source = MetalpriceApiSource(client_for(routes), "SECRET-KEY-123", policy)
    with (
        caplog.at_level(logging.WARNING, "metalcast_ingestor"),
        pytest.raises(SourceUnavailable) as info,
    ):
        await source.latest(["XAU"])
    assert "metalpriceapi: HTTP 503 on /v1/latest; attempt 1 of 3" in caplog.text
    assert "SECRET-KEY-123" not in caplog.text + str(info.value)
    assert routes.counts["/v1/latest"] == 3


async def test_html_body_with_200_is_rejected_with_the_raw_bytes(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({XAU: "gold-api/maintenance.html"})
    [item] = await GoldApiSource(client_for(routes), retry=policy).latest(["XAU"])
    assert isinstance(item, Rejected)
    assert item.source == "gold-api"
    assert "HTML" in item.reason
    assert item.original.startswith(b"<!doctype html>")


async def test_garbage_body_is_rejected(client_for: ClientFor, policy: RetryPolicy) -> None:
    routes = Routes({XAU: lambda request: httpx.Response(200, content=b"OK\x00\xff")})
    [item] = await GoldApiSource(client_for(routes), retry=policy).latest(["XAU"])
    assert isinstance(item, Rejected)
    assert "not JSON" in item.reason
    assert item.original == b"OK\x00\xff"


async def test_minimum_interval_between_calls(client_for: ClientFor, clock: FakeClock) -> None:
    paced = RetryPolicy(min_interval=2.0, jitter=0, sleep=clock.sleep, clock=clock.clock)
    routes = Routes({f"/price/{s}": f"gold-api/price_{s}.json" for s in ("XAU", "XAG", "XPT")})
    out = await GoldApiSource(client_for(routes), retry=paced).latest(["XAU", "XAG", "XPT"])
    assert len(out) == 3
    assert clock.waits == [2.0, 2.0]  # none before the first call, then one interval each


async def test_pacing_only_waits_for_what_is_left(client_for: ClientFor, clock: FakeClock) -> None:
    paced = RetryPolicy(min_interval=2.0, sleep=clock.sleep, clock=clock.clock)
    fetcher = HttpFetcher("p", client_for(Routes({"/a": "gold-api/price_XAU.json"})), paced)
    await fetcher.get("https://example.test/a")
    clock.now += 1.5  # time passes between the calls
    await fetcher.get("https://example.test/a")
    clock.now += 5.0
    await fetcher.get("https://example.test/a")
    assert clock.waits == [pytest.approx(0.5)]
    assert fetcher.requests == 3


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="min_interval"):
        RetryPolicy(min_interval=-1)


async def test_backoff_has_jitter_and_a_ceiling(client_for: ClientFor, clock: FakeClock) -> None:
    jittery = RetryPolicy(
        attempts=6,
        backoff_initial=1.0,
        backoff_max=5.0,
        jitter=0.5,
        min_interval=0,
        sleep=clock.sleep,
        clock=clock.clock,
    )
    routes = Routes({XAU: "gold-api/bad_gateway.response.json"})
    with pytest.raises(SourceUnavailable):
        await GoldApiSource(client_for(routes), retry=jittery).latest(["XAU"])
    assert len(clock.waits) == 5
    for wait, base in zip(clock.waits, [1.0, 2.0, 4.0, 5.0, 5.0], strict=True):
        assert base <= wait <= min(base + 0.5, 5.0)

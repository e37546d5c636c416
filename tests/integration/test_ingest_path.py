"""Provider answers, good and bad, through the real publisher, Kafka and sink."""

from __future__ import annotations

import httpx
import pytest

from metalcast_core import TICKS_DLQ, KafkaSettings, PostgresSettings
from metalcast_ingestor.runner import poll_once
from metalcast_ingestor.sources import (
    GoldApiSource,
    MetalpriceApiSource,
    MetalsApiSource,
    RetryPolicy,
)
from metalcast_sink.bootstrap import run_sink
from tests.support import FAST_GROUP, fetch, publisher, read_all, sink_settings
from tests.unit.ingestor.ingestor_kit import FakeClock, Routes

pytestmark = pytest.mark.integration


def _zero_price(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "name": "Palladium",
            "price": 0,
            "symbol": "XPD",
            "updatedAt": "2026-11-01T10:00:00Z",
        },
    )


async def test_bad_provider_answers_end_in_the_dlq_or_a_retried_failure_and_good_ticks_land(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    clock = FakeClock()
    policy = RetryPolicy(attempts=3, min_interval=0, sleep=clock.sleep, clock=clock.clock)
    gold = Routes(
        {
            "/price/XAU": "gold-api/price_XAU.json",
            "/price/XAG": "gold-api/maintenance.html",  # HTML instead of JSON
            "/price/XPT": ["gold-api/rate_limited.response.json", "gold-api/price_XPT.json"],
            "/price/XPD": _zero_price,
        }
    )
    quota = Routes({"/v1/latest": "metalpriceapi/error_quota.json"})  # success:false
    down = Routes({"/api/latest": "gold-api/bad_gateway.response.json"})  # 502 every time
    sources = [
        GoldApiSource(httpx.AsyncClient(transport=httpx.MockTransport(gold)), retry=policy),
        MetalpriceApiSource(
            httpx.AsyncClient(transport=httpx.MockTransport(quota)), "key", retry=policy
        ),
        MetalsApiSource(
            httpx.AsyncClient(transport=httpx.MockTransport(down)), "key", retry=policy
        ),
    ]
    settings = sink_settings(pg_settings, kafka_settings)
    async with publisher(kafka_settings, settings.known_symbols) as pub:
        report = await poll_once(sources, ["XAU", "XAG", "XPT", "XPD"], pub)

    # The 429 was honoured (its Retry-After of 7 s) and the retry landed XPT.
    assert 7.0 in clock.waits
    assert gold.counts["/price/XPT"] == 2
    # The provider that kept failing is a logged failure after every attempt, not a crash.
    assert set(report.failures) == {"metals-api"}
    assert down.total == 3
    assert report.stats.published == 2

    await run_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
    rows = await fetch(pg_settings, "SELECT symbol, source FROM prices.ticks ORDER BY symbol")
    assert [(r["symbol"], r["source"]) for r in rows] == [("XAU", "gold-api"), ("XPT", "gold-api")]

    letters = [TICKS_DLQ.decode(v) for v in await read_all(kafka_settings, TICKS_DLQ)]
    assert all(d.stage == "ingestor" for d in letters)
    assert len(letters) == 3
    html = next(d for d in letters if "HTML page" in d.reason)
    assert html.source == "gold-api"
    assert b"<html" in html.original.lower()  # the original bytes, as received
    zero = next(d for d in letters if d.reason.startswith("XPD"))
    assert "not finite and positive" in zero.reason
    quota_letter = next(d for d in letters if d.source == "metalpriceapi")
    assert "quota" in quota_letter.reason

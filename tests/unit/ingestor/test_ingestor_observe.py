"""The ingestor's metrics and health rules (metalcast_ingestor.observe): real sources on a
mock transport, polled by the real poll_once; a fake publisher (no Kafka)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import httpx

from metalcast_ingestor.observe import IngestorObserver, error_kind, ingestor_health
from metalcast_ingestor.publisher import PublishStats, TickPublisher
from metalcast_ingestor.runner import poll_once
from metalcast_ingestor.sources import GoldApiSource, RetryPolicy
from metalcast_ingestor.sources.base import Fetched, HistoryNotSupported, Rejected
from tests.unit.ingestor.ingestor_kit import Routes

ClientFor = Callable[[Routes], httpx.AsyncClient]
T = 1_790_000_000.0


class FakePublisher(TickPublisher):
    """Counts what it is handed the way TickPublisher does: good ticks out, the rest DLQ."""

    def __init__(self) -> None:
        pass

    async def publish(self, fetched: Iterable[Fetched]) -> PublishStats:
        items = list(fetched)
        stats = PublishStats()
        stats.dead_lettered = sum(1 for i in items if isinstance(i, Rejected))
        stats.published = len(items) - stats.dead_lettered
        return stats


class Clock:
    def __init__(self) -> None:
        self.now = T

    def __call__(self) -> float:
        return self.now


def source(name: str, routes: Routes, client_for: ClientFor, policy: RetryPolicy) -> GoldApiSource:
    src = GoldApiSource(client_for(routes), retry=policy)
    src.name = name  # three gold-api look-alikes, told apart by name
    return src


def value(seen: IngestorObserver, name: str, **labels: str) -> float | None:
    return seen.registry.get_sample_value(name, labels)


async def test_a_poll_counts_ticks_dead_letters_and_errors_by_source_and_kind(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    good = Routes(
        {"/price/XAU": "gold-api/price_XAU.json", "/price/XAG": "gold-api/price_XAG.json"}
    )
    half = Routes(
        {"/price/XAU": "gold-api/price_XAU_zero.json", "/price/XAG": "gold-api/price_XAG.json"}
    )
    denied = Routes(
        {"/price/XAU": lambda r: httpx.Response(401), "/price/XAG": "gold-api/price_XAG.json"}
    )
    slow = Routes(
        {"/price/XAU": httpx.ReadTimeout("slow"), "/price/XAG": httpx.ReadTimeout("slow")}
    )
    sources = [
        source("good", good, client_for, policy),
        source("half", half, client_for, policy),
        source("denied", denied, client_for, policy),
        source("slow", slow, client_for, policy),
    ]
    clock = Clock()
    seen = IngestorObserver([s.name for s in sources], clock=clock)
    report = await poll_once(sources, ["XAU", "XAG"], FakePublisher(), seen)
    assert set(report.failures) == {"denied", "slow"}

    assert value(seen, "metalcast_ingestor_ticks_published_total", source="good") == 2
    assert value(seen, "metalcast_ingestor_ticks_published_total", source="half") == 1
    assert value(seen, "metalcast_ingestor_ticks_published_total", source="denied") == 0
    assert value(seen, "metalcast_ingestor_dead_letters_total", source="half") == 1
    errors = "metalcast_ingestor_provider_errors_total"
    assert value(seen, errors, source="half", kind="bad_payload") == 1
    assert value(seen, errors, source="denied", kind="http_401") == 1
    assert value(seen, errors, source="slow", kind="timeout") == 1
    assert value(seen, errors, source="good", kind="bad_payload") is None
    last = "metalcast_ingestor_last_success_timestamp_seconds"
    assert value(seen, last, source="good") == T
    assert value(seen, last, source="slow") == 0
    health = seen.health(3600, 300)
    assert health.ok, health.reason  # two sources still deliver
    assert health.details["sources"]["denied"]["last_error"].startswith(
        "ProviderHTTPError: gold-api: HTTP 401"
    )


def test_error_kinds() -> None:
    assert error_kind(HistoryNotSupported("no")) == "no_history"
    assert error_kind(httpx.ConnectTimeout("t")) == "timeout"
    assert error_kind(ValueError("a bug")) == "error"


def test_unhealthy_when_every_source_failed_its_last_poll_naming_each() -> None:
    clock = Clock()
    seen = IngestorObserver(["a", "b"], clock=clock)
    seen.fetched("a", [], PublishStats(published=4))
    clock.now += 3600
    seen.failed("a", TimeoutError("read timed out"))
    seen.failed("b", ValueError("bad key"))
    seen.polled(1.0)
    health = ingestor_health(seen, clock.now, 3600, 300)
    assert not health.ok
    assert health.reason == (
        "every source failed its last poll: a (last success 2026-09-21T14:13:20Z "
        "(3600 s ago)): TimeoutError: read timed out; b (last success never): ValueError: bad key"
    )
    clock.now += 3600
    seen.fetched("b", [], PublishStats(published=1))
    assert seen.health(3600, 300).ok


def test_unhealthy_when_no_poll_finishes_within_the_interval_and_grace() -> None:
    clock = Clock()
    seen = IngestorObserver(["a"], clock=clock)
    clock.now += 3899
    assert seen.health(3600, 300).ok
    clock.now += 1
    assert seen.health(3600, 300).reason.startswith("no first poll since ")
    seen.fetched("a", [], PublishStats(published=1))
    seen.polled(0.5)
    clock.now += 3900
    health = seen.health(3600, 300)
    assert not health.ok
    assert health.reason.endswith("(3900 s ago) (interval 3600 s, grace 300 s)")
    assert value(seen, "metalcast_ingestor_polls_total") == 1

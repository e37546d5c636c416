"""The watch asks each configured worker's /healthz: 200 passes, anything else is a problem
with the worker's own reason. A real status server on a loopback port (no stack needed)."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from metalcast_core import Health, StatusServer
from metalcast_watch import Figures, WatchSection, evaluate
from metalcast_watch.observe import worker_health

NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)


def test_only_the_configured_workers_are_asked() -> None:
    assert WatchSection().health_urls() == {}
    cfg = WatchSection(sink_health_url="http://sink:9101/healthz", ingestor_health_url="")
    assert cfg.health_urls() == {"sink": "http://sink:9101/healthz"}


async def test_worker_health_reads_200_and_503_with_the_reason_and_no_answer() -> None:
    state = {"health": Health.healthy(batches=2)}
    async with StatusServer(CollectorRegistry(), lambda: state["health"]) as server:
        url = f"http://127.0.0.1:{server.port}/healthz"
        ok = await asyncio.to_thread(worker_health, url, 5)
        state["health"] = Health.unhealthy("database unavailable since 12:00")
        bad = await asyncio.to_thread(worker_health, url, 5)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/healthz"
    gone = await asyncio.to_thread(worker_health, dead, 5)

    assert ok == {"url": url, "status": 200, "body": {"status": "ok", "batches": 2}}
    assert bad["status"] == 503
    assert bad["body"]["reason"] == "database unavailable since 12:00"
    assert gone["status"] is None
    assert "Connection refused" in gone["error"]

    figures = Figures(checked_at=NOW, workers={"sink": bad, "trainer": ok, "ingestor": gone})
    assert evaluate(figures, WatchSection()) == [
        f"the ingestor's /healthz ({dead}) did not answer: {gone['error']}",
        "the sink is unhealthy (/healthz 503): database unavailable since 12:00",
    ]


def test_a_503_without_a_json_reason_is_still_a_problem() -> None:
    figures = Figures(
        checked_at=NOW, workers={"trainer": {"url": "u", "status": 502, "body": "Bad Gateway"}}
    )
    assert evaluate(figures, WatchSection()) == [
        "the trainer is unhealthy (/healthz 502): no reason given"
    ]

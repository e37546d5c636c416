"""The ingestor's /metrics and /healthz in schedule mode on real Kafka: the ticks it reports
are the ticks in prices.ticks.v1; a source that cannot be reached is counted by kind and named
in /healthz; the door closes with the schedule."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest

from metalcast_core import TICKS, KafkaSettings, PostgresSettings
from metalcast_ingestor import bootstrap as ingestor
from metalcast_ingestor.config import IngestorSettings, IngestSection
from metalcast_ingestor.sources import GoldApiSource
from tests.support import free_port, http_get, port_closed, read_all, scrape

pytestmark = pytest.mark.integration


async def test_schedule_reports_what_it_published_and_which_source_fails(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a provider address nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    port = free_port()
    settings = IngestorSettings(
        postgres=pg_settings,
        kafka=kafka_settings,
        ingest=IngestSection(
            sources=["simulated", "gold-api"],
            align=False,
            max_attempts=1,
            http_timeout_s=2,
            metrics_port=port,
        ),
    )
    # gold-api's address moved to a closed port
    monkeypatch.setattr(GoldApiSource, "default_base_url", f"http://127.0.0.1:{dead}")
    stop = asyncio.Event()
    task = asyncio.create_task(ingestor.schedule(settings, None, stop))
    try:
        deadline = time.monotonic() + 60
        metrics: dict[Any, float] = {}
        while metrics.get(("metalcast_ingestor_polls_total", ())) != 1:
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, "no poll reported"
            await asyncio.sleep(0.2)
            try:
                metrics = await scrape(port)
            except OSError:
                continue
        status, body = await http_get(port, "/healthz")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    in_kafka = await read_all(kafka_settings, TICKS)
    published = metrics[("metalcast_ingestor_ticks_published_total", (("source", "simulated"),))]
    assert published == len(in_kafka) == len(settings.ingest.symbols)
    assert metrics[("metalcast_ingestor_ticks_published_total", (("source", "gold-api"),))] == 0
    assert (
        metrics[
            (
                "metalcast_ingestor_provider_errors_total",
                (("kind", "network"), ("source", "gold-api")),
            )
        ]
        == 1
    )
    assert (
        metrics[("metalcast_ingestor_last_success_timestamp_seconds", (("source", "gold-api"),))]
        == 0
    )
    assert metrics[
        ("metalcast_ingestor_last_success_timestamp_seconds", (("source", "simulated"),))
    ] == pytest.approx(time.time(), abs=60)
    assert status == 200  # one source of two still delivers
    health = json.loads(body)
    assert health["sources"]["gold-api"]["last_error"].startswith("SourceUnavailable: gold-api")
    assert health["sources"]["simulated"]["last_error"] is None
    assert await port_closed(port)

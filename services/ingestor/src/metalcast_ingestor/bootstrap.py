"""Composition root of the ingestor: settings → HTTP client, sources, producer, publisher."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from metalcast_core import configure_logging, ensure_topics, make_producer, serve_status
from metalcast_ingestor.config import IngestorSettings
from metalcast_ingestor.observe import IngestorObserver
from metalcast_ingestor.publisher import PublishStats, TickPublisher
from metalcast_ingestor.runner import backfill as run_backfill
from metalcast_ingestor.runner import poll_once, publish_stream, run_schedule
from metalcast_ingestor.sources.base import PriceSource
from metalcast_ingestor.sources.registry import SourceParams, build_source
from metalcast_ingestor.sources.replay import ReplaySource


def configure(settings: IngestorSettings) -> None:
    configure_logging(settings.log_level)


def current_hour() -> datetime:
    """The start of the current UTC hour (a backfill's default end is one hour after it)."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _params(settings: IngestorSettings) -> SourceParams:
    ing = settings.ingest
    return SourceParams.from_settings(ing)


@asynccontextmanager
async def _publisher(settings: IngestorSettings) -> AsyncIterator[TickPublisher]:
    await ensure_topics(settings.kafka)
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        yield TickPublisher(producer, settings.kafka, settings.known_symbols)
    finally:
        await producer.stop()


@asynccontextmanager
async def _sources(
    settings: IngestorSettings, names: Sequence[str]
) -> AsyncIterator[list[PriceSource]]:
    async with httpx.AsyncClient(timeout=settings.ingest.http_timeout_s) as client:
        sources = [build_source(n, client, _params(settings)) for n in names]
        try:
            yield sources
        finally:
            for s in sources:
                await s.aclose()


def _summary(stats: PublishStats) -> dict[str, Any]:
    out = dataclasses.asdict(stats)
    out["by_symbol"] = dict(stats.by_symbol)
    return out


async def backfill(
    settings: IngestorSettings, source: str, start: datetime, end: datetime
) -> dict[str, Any]:
    async with _publisher(settings) as pub, _sources(settings, [source]) as (src,):
        return _summary(await run_backfill(src, settings.ingest.symbols, start, end, pub))


async def replay(settings: IngestorSettings, file: Path) -> dict[str, Any]:
    async with _publisher(settings) as pub:
        src = ReplaySource(file)
        return _summary(await publish_stream(src.rows(), pub))


async def poll(settings: IngestorSettings, names: Sequence[str] | None) -> dict[str, Any]:
    async with (
        _publisher(settings) as pub,
        _sources(settings, names or settings.ingest.sources) as sources,
    ):
        report = await poll_once(sources, settings.ingest.symbols, pub)
        return {**_summary(report.stats), "failures": report.failures}


async def schedule(
    settings: IngestorSettings, names: Sequence[str] | None, stop: asyncio.Event
) -> None:
    """Poll every interval until ``stop``, with ``/metrics`` and ``/healthz`` on
    ``metrics_host:metrics_port`` meanwhile."""
    ing = settings.ingest
    async with (
        _publisher(settings) as pub,
        _sources(settings, names or ing.sources) as sources,
    ):
        seen = IngestorObserver([s.name for s in sources])
        async with serve_status(
            "ingestor",
            seen.registry,
            lambda: seen.health(ing.interval_s, ing.stall_after_s),
            ing.metrics_host,
            ing.metrics_port,
        ):
            await run_schedule(
                sources, ing.symbols, pub, ing.interval_s, ing.align, stop, observer=seen
            )

"""The API's end-to-end world, built once per session through the real paths:

simulated backfill (ingestor) → Kafka → sink → PostgreSQL of all hours but the newest, a
trainer run (``metalcast_trainer.bootstrap.train_once`` with one candidate, ``arima``: v1,
promoted as the first model), then the newest hour through the same path and a second run
(candidates ``arima`` and ``naive``: champion/challenger on the moved window makes v2 of each
metal, promoted whichever candidate wins), and the API itself served by uvicorn in a thread
on 127.0.0.1 (so sync tools such as schemathesis and Chromium can call it while the test's
event loop is idle). A run on unchanged data would make no version: hence the held-back hour.
The sink, the trainer and the API each run under their own PostgreSQL role (migration 0008),
as in production: every rollback and unpin here goes through ``ml.set_production``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from metalcast.stack.world import isolated_world
from metalcast_api import ApiSection, ApiSettings
from metalcast_api.app import create_app
from metalcast_core import (
    METAL_SYMBOLS,
    KafkaSettings,
    PostgresSettings,
    S3Settings,
)
from metalcast_ingestor import bootstrap as ingestor
from metalcast_ingestor.config import IngestorSettings
from metalcast_sink.bootstrap import run_sink
from metalcast_trainer.bootstrap import train_once
from metalcast_trainer.config import TrainerSection, TrainerSettings
from tests.support import FAST_GROUP, ServerThread, as_role, sink_settings

API_KEY = "test-api-key-0123456789"
HISTORY_HOURS = 72


@dataclass
class World:
    pg: PostgresSettings
    kafka: KafkaSettings
    s3: S3Settings
    settings: ApiSettings
    url: str
    start: datetime  # first hour backfilled
    end: datetime  # the hour after the last one backfilled

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.pg.url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()


def api_settings(pg: PostgresSettings, kafka: KafkaSettings, s3: S3Settings) -> ApiSettings:
    return ApiSettings(
        environment="test",
        postgres=pg,
        kafka=kafka,
        s3=s3,
        api=ApiSection(api_key=SecretStr(API_KEY), pointer_check_s=2.0),
    )


@contextlib.asynccontextmanager
async def isolated(stack: Any) -> AsyncIterator[tuple[PostgresSettings, KafkaSettings, S3Settings]]:
    """A database, a topic prefix and buckets of their own (like the per-test fixtures)."""
    async with isolated_world(stack.env, label="test_api") as own:
        yield own.postgres, own.kafka, own.s3


async def train(
    pg: PostgresSettings,
    kafka: KafkaSettings,
    s3: S3Settings,
    candidates: list[str],
    baseline: str | None,
) -> Any:
    work = Path(f"/tmp/metalcast-api-tests/{uuid.uuid4().hex[:8]}")
    section = TrainerSection.model_validate(
        {"candidates": candidates, "baseline": baseline, "work_dir": work}
    )
    settings = TrainerSettings(
        postgres=as_role(pg, "metalcast_trainer"), kafka=kafka, s3=s3, trainer=section
    )
    report = await train_once(settings)
    assert report.status == "succeeded", report
    assert sorted(report.promoted) == sorted(METAL_SYMBOLS), report
    return report


async def ingest(
    pg: PostgresSettings, kafka: KafkaSettings, start: datetime, end: datetime
) -> None:
    """Simulated hours ``[start, end)`` through the ingestor, Kafka and the sink."""
    stats = await ingestor.backfill(
        IngestorSettings(postgres=pg, kafka=kafka), "simulated", start, end
    )
    hours = int((end - start) / timedelta(hours=1))
    assert stats["published"] == len(METAL_SYMBOLS) * hours
    await run_sink(
        sink_settings(as_role(pg, "metalcast_sink"), kafka),
        until_idle=True,
        consumer_options=FAST_GROUP,
    )


@pytest.fixture(scope="session")
async def world(stack: Any) -> AsyncIterator[World]:
    async with isolated(stack) as (pg, kafka, s3):
        end = ingestor.current_hour() + timedelta(hours=1)
        start = end - timedelta(hours=HISTORY_HOURS)
        newest = end - timedelta(hours=1)
        await ingest(pg, kafka, start, newest)
        await train(pg, kafka, s3, ["arima"], None)  # v1: arima, the first model
        await ingest(pg, kafka, newest, end)
        await train(pg, kafka, s3, ["arima", "naive"], "naive")  # v2, in production
        settings = api_settings(as_role(pg, "metalcast_api"), kafka, s3)
        with ServerThread(create_app(settings)) as server:
            yield World(pg, kafka, s3, settings, server.url, start, end)


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=world.url, timeout=30) as c:
        yield c


async def wait_until(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.2)

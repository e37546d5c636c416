"""Many instruments, more than one trainer: two trainer instances (each a member of the
batch-loaded group and of the train-requested group) share the instruments through Kafka's
own consumer-group partitioning; one load trains every instrument exactly once, on one of
them, with its backtests in a process pool."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from metalcast_core import (
    BATCH_LOADED,
    BatchLoaded,
    Instrument,
    KafkaSettings,
    ModelConfig,
    PostgresSettings,
    PriceBar,
    S3Settings,
    make_producer,
)
from metalcast_core import upsert_instruments as catalogue
from metalcast_sink.bars import write_bars
from metalcast_trainer.bootstrap import run_trainer
from metalcast_trainer.config import TrainerSection, TrainerSettings
from tests.support import FAST_GROUP, fetch

pytestmark = pytest.mark.integration

SYMBOLS = [f"EQ{n:02d}" for n in range(12)]


async def _seed(pg: PostgresSettings) -> None:
    import math

    conn = await asyncpg.connect(pg.url)
    try:
        await catalogue(
            conn,
            [
                Instrument(
                    symbol=s,
                    kind="equity",
                    cadence="daily",
                    providers={"alphavantage": s},
                    model=ModelConfig(x_size=20, candidates=("naive", "drift")),
                )
                for s in SYMBOLS
            ],
        )
        today = datetime.now(UTC).date()
        bars = []
        for n, symbol in enumerate(SYMBOLS):
            for i in range(80):
                close = 100.0 + n + 5 * math.sin(i / 3 + n)
                day: date = today - timedelta(days=80 - i)
                bars.append(
                    PriceBar(
                        symbol=symbol,
                        source="alphavantage",
                        date=day,
                        open=close,
                        high=close,
                        low=close,
                        close=close,
                        volume=1e6,
                    )
                )
        await write_bars(conn, bars, len(bars), 0)
    finally:
        await conn.close()


async def _members(kafka: KafkaSettings, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        [answer] = await admin.describe_consumer_groups([group])
        groups = answer.to_object()["groups"]
        ok = [g for g in groups if g["state"] == "Stable"]
        return len(ok[0]["members"]) if ok else 0
    finally:
        await admin.close()


async def test_two_trainers_train_every_instrument_exactly_once_per_load(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    await _seed(pg_settings)
    suffix = uuid.uuid4().hex[:6]
    section: dict[str, Any] = {
        "candidates": ["naive", "drift"],
        "backtest_origins": 20,
        "group_id": f"trainer-{suffix}",
        "instrument_group_id": f"instruments-{suffix}",
        "workers": 1,
        "coalesce_s": 0.5,
    }
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [
        asyncio.create_task(
            run_trainer(
                TrainerSettings(
                    postgres=pg_settings,
                    kafka=kafka_settings,
                    s3=s3_settings,
                    trainer=TrainerSection.model_validate(
                        {**section, "work_dir": tmp_path / f"t{i}"}
                    ),
                ),
                stop,
                consumer_options=FAST_GROUP,
            )
        )
        for i, stop in enumerate(stops)
    ]
    try:
        deadline = time.monotonic() + 90
        while await _members(kafka_settings, section["instrument_group_id"]) < 2:
            assert time.monotonic() < deadline, "the two trainers did not both join"
            assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
            await asyncio.sleep(0.5)

        # One load that touched every instrument, announced as the sink announces it.
        producer = make_producer(kafka_settings)
        await producer.start()
        try:
            event = BatchLoaded(
                symbols=SYMBOLS,
                first_hour=None,
                last_hour=None,
                rows_inserted=len(SYMBOLS),
                ticks_received=len(SYMBOLS),
                table="prices.bars",
            )
            await producer.send_and_wait(
                kafka_settings.topic_name(BATCH_LOADED), BATCH_LOADED.encode(event), key=b"k"
            )
        finally:
            await producer.stop()

        sql = "SELECT symbol, status FROM ml.training_results WHERE symbol = ANY($1::text[])"
        deadline = time.monotonic() + 180
        while len(await fetch(pg_settings, sql, SYMBOLS)) < len(SYMBOLS):
            assert time.monotonic() < deadline, await fetch(pg_settings, sql, SYMBOLS)
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # anything trained twice would show up by now
    finally:
        for stop in stops:
            stop.set()
        reports = await asyncio.gather(*tasks)

    results = await fetch(pg_settings, sql, SYMBOLS)
    assert sorted(r["symbol"] for r in results) == SYMBOLS  # each once
    assert {r["status"] for r in results} == {"promoted"}
    versions = await fetch(
        pg_settings, "SELECT symbol, count(*) AS n FROM ml.model_versions GROUP BY symbol"
    )
    assert {r["symbol"]: r["n"] for r in versions} == dict.fromkeys(SYMBOLS, 1)
    by_instance = [{s for report in runs for s in report.promoted} for runs in reports]
    assert by_instance[0] | by_instance[1] == set(SYMBOLS)
    assert not by_instance[0] & by_instance[1]
    assert all(by_instance), by_instance  # both took a share (12 symbols, 12 partitions)
    # The metals were not touched by this load: no metal trained.
    assert not await fetch(
        pg_settings,
        "SELECT 1 FROM ml.training_results WHERE symbol = ANY($1::text[])",
        ["XAU", "XAG", "XPT", "XPD"],
    )

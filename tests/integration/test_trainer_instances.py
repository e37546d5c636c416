"""Many instruments, more than one trainer: two trainer instances (each a member of the
batch-loaded group and of the train-requested group) share the instruments through Kafka's
own consumer-group partitioning; one load trains every instrument exactly once, on one of
them, with its backtests in a process pool. Once with two trainer tasks in this process, once
with two real trainer processes (``python -m metalcast_trainer``, settings from the
environment)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

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
from tests.conftest import Stack
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
        try:
            [answer] = await admin.describe_consumer_groups([group])
        except GroupCoordinatorNotAvailableError:  # no member has asked for the group yet
            return 0
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


# --- The same, as two real trainer processes (the trainer's own front door) -------------------

RUN_LINE = re.compile(r"metalcast_trainer\.runner: run (\d+) (\w+): promoted")


def _process_env(
    stack: Stack, kafka: KafkaSettings, pg: PostgresSettings, **more: str
) -> dict[str, str]:
    """The trainer's settings in the environment, as compose hands them over."""
    return {
        **os.environ,
        **stack.env,
        "METALCAST_POSTGRES__URL": pg.url,
        "METALCAST_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "METALCAST_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "METALCAST_LOG_LEVEL": "INFO",
        **more,
    }


async def test_two_trainer_processes_train_every_instrument_exactly_once_per_load(
    stack: Stack,
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    """Two ``python -m metalcast_trainer`` processes (settings from the environment only),
    one load touching every instrument: each instrument trained once (one result, one
    version), each process a share, told apart by the run ids each logged."""
    await _seed(pg_settings)
    suffix = uuid.uuid4().hex[:6]
    group = f"instruments-{suffix}"
    common = {
        "METALCAST_S3__ENDPOINT_URL": s3_settings.endpoint_url or "",
        "METALCAST_S3__MODELS_BUCKET": s3_settings.models_bucket,
        "METALCAST_S3__BACKUPS_BUCKET": s3_settings.backups_bucket,
        "METALCAST_TRAINER__CANDIDATES": '["naive", "drift"]',
        "METALCAST_TRAINER__BACKTEST_ORIGINS": "20",
        "METALCAST_TRAINER__GROUP_ID": f"trainer-{suffix}",
        "METALCAST_TRAINER__INSTRUMENT_GROUP_ID": group,
        "METALCAST_TRAINER__WORKERS": "1",
        "METALCAST_TRAINER__COALESCE_S": "0.5",
        "METALCAST_TRAINER__METRICS_PORT": "0",
    }
    logs = [tmp_path / f"trainer-{i}.log" for i in range(2)]
    procs = []
    for i, log_path in enumerate(logs):
        env = _process_env(
            stack,
            kafka_settings,
            pg_settings,
            **common,
            METALCAST_TRAINER__WORK_DIR=str(tmp_path / f"work-{i}"),
        )
        with log_path.open("wb") as sink:
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "metalcast_trainer",
                    env=env,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=sink,
                )
            )

    def tails() -> list[str]:
        return [p.read_text(errors="replace")[-2000:] for p in logs]

    sql = "SELECT run_id, symbol, status FROM ml.training_results WHERE symbol = ANY($1::text[])"
    began = time.monotonic()
    try:
        deadline = time.monotonic() + 120
        while await _members(kafka_settings, group) < 2:
            assert time.monotonic() < deadline, ("the two trainers did not both join", tails())
            assert all(p.returncode is None for p in procs), ("a trainer exited", tails())
            await asyncio.sleep(0.5)
        joined = time.monotonic()

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

        deadline = time.monotonic() + 180
        while len(await fetch(pg_settings, sql, SYMBOLS)) < len(SYMBOLS):
            assert time.monotonic() < deadline, (await fetch(pg_settings, sql, SYMBOLS), tails())
            assert all(p.returncode is None for p in procs), ("a trainer exited", tails())
            await asyncio.sleep(0.5)
        trained = time.monotonic()
        await asyncio.sleep(3)  # anything trained twice would show up by now
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert [p.returncode for p in procs] == [0, 0], tails()

    results = await fetch(pg_settings, sql, SYMBOLS)
    assert sorted(r["symbol"] for r in results) == SYMBOLS  # each exactly once
    assert {r["status"] for r in results} == {"promoted"}
    versions = await fetch(
        pg_settings, "SELECT symbol, count(*) AS n FROM ml.model_versions GROUP BY symbol"
    )
    assert {r["symbol"]: r["n"] for r in versions} == dict.fromkeys(SYMBOLS, 1)
    # Which process ran which run: each logged its own run ids.
    run_ids = [
        {int(m.group(1)) for m in RUN_LINE.finditer(p.read_text(errors="replace"))} for p in logs
    ]
    assert not run_ids[0] & run_ids[1]
    shares = [{r["symbol"] for r in results if r["run_id"] in ids} for ids in run_ids]
    assert shares[0] | shares[1] == set(SYMBOLS), (shares, tails())
    assert not shares[0] & shares[1]
    assert all(shares), shares  # both processes took a share
    runs = await fetch(
        pg_settings,
        "SELECT trigger FROM ml.training_runs WHERE id = ANY($1::bigint[])",
        sorted(run_ids[0] | run_ids[1]),
    )
    assert {r["trigger"] for r in runs} == {"train-requested"}
    print(
        f"two trainer processes: joined in {joined - began:.1f} s, {len(SYMBOLS)} instruments "
        f"trained in {trained - joined:.1f} s, shares {sorted(len(s) for s in shares)}"
    )

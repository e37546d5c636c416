"""Instruments trained in batches (metalcast_trainer.instruments), on the real servers: each
instrument's outcome is its own (bad data, a pin, an upload that fails), batches of any size
record exactly what the runs did, and a load moves every unpinned pointer once."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from metalcast_core import (
    Instrument,
    KafkaSettings,
    ModelConfig,
    PostgresSettings,
    PriceBar,
    S3Settings,
    create_pool,
    make_s3_client,
    upsert_instruments,
)
from metalcast_models import registry
from metalcast_sink.bars import write_bars
from metalcast_trainer.config import TrainerSection, TrainerSettings
from metalcast_trainer.instruments import LazyProcessPool
from metalcast_trainer.runner import RunReport, TrainingRunner
from tests.support import fetch

pytestmark = pytest.mark.integration

GOOD = [f"EQ{i:02d}" for i in range(11)]
SHORT = "SHORT"  # 10 days of bars for a window of 20
DAYS = 45


def _bars(symbol: str, days: list[date], seed: int) -> list[PriceBar]:
    bars = []
    price = 50.0 + seed
    for i, day in enumerate(days):
        price *= math.exp(0.01 * math.sin(i * (1.3 + seed / 7)) + 0.002 * math.cos(i * 0.4))
        bars.append(
            PriceBar(
                symbol=symbol,
                source="alphavantage",
                date=day,
                open=price,
                high=price,
                low=price,
                close=price,
                volume=1.0e6,
            )
        )
    return bars


async def _seed(pg: PostgresSettings, today: date) -> None:
    days = [today - timedelta(days=DAYS - i) for i in range(DAYS)]
    conn = await asyncpg.connect(pg.url)
    try:
        await upsert_instruments(
            conn,
            [
                Instrument(
                    symbol=s,
                    kind="equity",
                    cadence="daily",
                    providers={"alphavantage": s},
                    model=ModelConfig(x_size=20, candidates=("naive", "drift")),
                )
                for s in [*GOOD, SHORT]
            ],
        )
        bars = [b for n, s in enumerate(GOOD) for b in _bars(s, days, n)]
        bars += _bars(SHORT, days[-10:], 99)
        await write_bars(conn, bars, len(bars), 0)
    finally:
        await conn.close()


async def _new_bar(pg: PostgresSettings, day: date) -> None:
    conn = await asyncpg.connect(pg.url)
    try:
        bars = [b for n, s in enumerate(GOOD) for b in _bars(s, [day], n + 3)]
        await write_bars(conn, bars, len(bars), 0)
    finally:
        await conn.close()


def _settings(
    pg: PostgresSettings, kafka: KafkaSettings, s3: S3Settings, work: Path
) -> TrainerSettings:
    section = TrainerSection.model_validate(
        {
            "candidates": ["naive", "drift"],
            "work_dir": work,
            "backtest_origins": 12,
            "instrument_batch": 4,  # 11 to backtest: batches of 4, 4 and 3
            "instrument_batches": 2,
        }
    )
    return TrainerSettings(postgres=pg, kafka=kafka, s3=s3, trainer=section)


async def _run(settings: TrainerSettings, workers: int) -> RunReport:
    pool = await create_pool(settings.postgres)
    lazy = LazyProcessPool(workers) if workers else None
    try:
        runner = TrainingRunner(settings, pool, make_s3_client(settings.s3), lazy)
        runner.want([*GOOD, SHORT])
        return await runner.run("batch-loaded")
    finally:
        await pool.close()
        if lazy is not None:
            lazy.shutdown()


async def test_batches_record_each_instrument_and_respect_a_pin(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    today = datetime.now(UTC).date()
    await _seed(pg_settings, today)
    settings = _settings(pg_settings, kafka_settings, s3_settings, tmp_path)

    first = await _run(settings, workers=2)
    assert first.status == "partial"
    assert set(first.promoted) == set(GOOD)
    assert first.versions == {s: 1 for s in GOOD}
    assert first.failed == {SHORT: "too few rows: 10 observed daily values, need 20"}
    assert first.timings["origins_fitted"] == len(GOOD) * 2 * 12  # two candidates, 12 origins
    results = await fetch(
        pg_settings,
        "SELECT symbol, status, model_version_id FROM ml.training_results WHERE run_id = $1",
        first.run_id,
    )
    assert {r["symbol"]: r["status"] for r in results} == {
        **{s: "promoted" for s in GOOD},
        SHORT: "failed",
    }
    backtests = await fetch(
        pg_settings, "SELECT symbol FROM ml.backtests WHERE run_id = $1", first.run_id
    )
    assert sorted(r["symbol"] for r in backtests) == sorted(GOOD * 2)
    versions = await fetch(
        pg_settings,
        "SELECT symbol, version, artifact_uri, sha256 FROM ml.model_versions ORDER BY symbol",
    )
    assert [r["symbol"] for r in versions] == GOOD
    s3 = make_s3_client(s3_settings)
    for row in versions:
        key = row["artifact_uri"].split("/", 3)[3]
        head = s3.head_object(Bucket=s3_settings.models_bucket, Key=key)
        assert head["Metadata"]["sha256"] == row["sha256"]
        assert key.endswith(f"{row['symbol']}/1/{row['symbol']}.zip")

    # Pin EQ03 at v1 (as a rollback would), then a load with a new bar for every instrument:
    # every other pointer moves to v2 once; EQ03 gets v2 recorded but stays at v1.
    conn = await asyncpg.connect(pg_settings.url)
    try:
        v1 = await registry.get_version(conn, "EQ03", 1)
        assert v1 is not None
        await registry.move_pointer(
            conn, "EQ03", v1.id, action="rollback", by="test", note="hold", pinned=True
        )
    finally:
        await conn.close()
    await _new_bar(pg_settings, today)
    second = await _run(settings, workers=0)  # the same batches in threads
    assert second.versions == {s: 2 for s in GOOD}
    assert set(second.promoted) == set(GOOD) - {"EQ03"}
    assert {m.symbol for m in second.moves} == set(GOOD) - {"EQ03"}
    assert all(m.from_version == 1 and m.to_version == 2 for m in second.moves)
    assert second.timings["origins_reused"] > 0  # the cache was read back per batch
    statuses = await fetch(
        pg_settings,
        "SELECT symbol, status, reason FROM ml.training_results WHERE run_id = $1",
        second.run_id,
    )
    by_symbol = {r["symbol"]: r for r in statuses}
    assert by_symbol["EQ03"]["status"] == "pinned"
    assert all(by_symbol[s]["status"] == "promoted" for s in GOOD if s != "EQ03")
    production = await fetch(
        pg_settings,
        "SELECT p.symbol, v.version FROM ml.production_models AS p "
        "JOIN ml.model_versions AS v ON v.id = p.model_version_id",
    )
    assert {r["symbol"]: r["version"] for r in production} == {
        **{s: 2 for s in GOOD},
        "EQ03": 1,
    }
    history = await fetch(
        pg_settings,
        "SELECT symbol, count(*) AS moves FROM ml.production_history GROUP BY symbol",
    )
    # v1 promoted and v2 promoted; EQ03: v1 promoted, then the pin.
    assert {r["symbol"]: r["moves"] for r in history} == {s: 2 for s in GOOD}


async def test_an_upload_that_fails_fails_its_instruments_and_keeps_production(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    today = datetime.now(UTC).date()
    await _seed(pg_settings, today)
    settings = _settings(pg_settings, kafka_settings, s3_settings, tmp_path)
    missing = s3_settings.model_copy(update={"models_bucket": f"{s3_settings.models_bucket}-gone"})
    report = await _run(settings.model_copy(update={"s3": missing}), workers=0)
    assert report.status == "failed"
    assert not report.versions
    assert not report.promoted
    assert set(report.failed) == {*GOOD, SHORT}
    assert all(report.failed[s].startswith("upload failed: NoSuchBucket") for s in GOOD)
    rows = await fetch(pg_settings, "SELECT count(*) AS n FROM ml.model_versions")
    assert rows[0]["n"] == 0
    results = await fetch(
        pg_settings,
        "SELECT status, count(*) AS n FROM ml.training_results WHERE run_id = $1 GROUP BY 1",
        report.run_id,
    )
    assert {r["status"]: r["n"] for r in results} == {"failed": len(GOOD) + 1}
    # The backtests ran and stay recorded (and cached for the next run).
    cached = await fetch(pg_settings, "SELECT count(*) AS n FROM ml.backtest_forecasts")
    assert cached[0]["n"] == len(GOOD) * 2 * 12

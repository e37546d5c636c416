"""The trainer on the real stack: runs, versions, files in S3, failures, rollback."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from metalcast_core import (
    BATCH_LOADED,
    METALS,
    MODELS_TRAINED,
    BatchLoaded,
    KafkaSettings,
    PostgresSettings,
    S3Settings,
    make_s3_client,
)
from metalcast_ingestor import bootstrap as ingestor
from metalcast_ingestor.config import IngestorSettings
from metalcast_models import GeneratedData, Model, load_forecaster, registry
from metalcast_sink.bootstrap import run_sink
from metalcast_trainer.bootstrap import run_trainer, train_once
from metalcast_trainer.config import TrainerSection, TrainerSettings
from tests.support import FAST_GROUP, fetch, fetchval, produce_raw, read_all, sink_settings

pytestmark = pytest.mark.integration

TICKERS = [m.ticker for m in METALS]


def trainer_settings(
    pg: PostgresSettings, kafka: KafkaSettings, s3: S3Settings, work: Path
) -> TrainerSettings:
    return TrainerSettings(
        postgres=pg,
        kafka=kafka,
        s3=s3,
        trainer=TrainerSection(group_id=f"trainer-{uuid.uuid4().hex[:8]}", work_dir=work),
    )


async def backfill_and_sink(pg: PostgresSettings, kafka: KafkaSettings, hours: int = 48) -> None:
    end = ingestor.current_hour() + timedelta(hours=1)
    await ingestor.backfill(
        IngestorSettings(postgres=pg, kafka=kafka), "simulated", end - timedelta(hours=hours), end
    )
    await run_sink(sink_settings(pg, kafka), until_idle=True, consumer_options=FAST_GROUP)


@contextlib.asynccontextmanager
async def serving(settings: TrainerSettings) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_trainer(settings, stop, consumer_options=FAST_GROUP))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def finished_runs(pg: PostgresSettings) -> list[asyncpg.Record]:
    return await fetch(pg, "SELECT * FROM ml.training_runs WHERE status <> 'running' ORDER BY id")


async def wait_for_runs(pg: PostgresSettings, n: int, timeout_s: float = 90) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(await finished_runs(pg)) < n:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"fewer than {n} finished training runs")
        await asyncio.sleep(0.1)


async def test_a_batch_loaded_event_trains_four_models_stored_in_s3(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    settings = trainer_settings(pg_settings, kafka_settings, s3_settings, tmp_path)
    async with serving(settings):
        await backfill_and_sink(pg_settings, kafka_settings)  # publishes batch-loaded
        await wait_for_runs(pg_settings, 1)

    [run] = await finished_runs(pg_settings)
    assert run["status"] == "succeeded"
    assert run["trigger"] == "batch-loaded"
    assert run["trigger_events"] >= 1
    window = await fetch(pg_settings, "SELECT ts FROM ml.metal_prices_training ORDER BY ts")
    assert (run["window_start"], run["window_end"]) == (window[0]["ts"], window[-1]["ts"])

    s3 = make_s3_client(s3_settings)
    async with asyncpg.create_pool(pg_settings.url) as pool, pool.acquire() as conn:
        current = await registry.production(conn)
    assert [v.symbol for v in current] == sorted(m.symbol for m in METALS)
    for v in current:
        assert v.version == 1
        assert v.family == "arima"
        assert v.hyperparameters["order"] == [1, 1, 0]
        assert v.hyperparameters["with_intercept"] is True
        assert {"ar.L1", "intercept", "sigma2", "aic", "bic"} <= set(v.fitted_params)
        assert {"mae", "rmse", "naive_mae", "naive_rmse"} <= set(v.metrics)
        assert v.n_observations == 12
        path = registry.download_artifact(s3, v.artifact_uri, tmp_path / "dl" / v.symbol)
        assert path.stat().st_size == v.size_bytes
        forecaster = load_forecaster(path)
        [step] = forecaster.predict(fh=[1]).to_numpy().ravel()
        assert step > 0
    event = MODELS_TRAINED.decode((await read_all(kafka_settings, MODELS_TRAINED))[0])
    assert event.run_id == run["id"]
    assert event.versions == {m.symbol: 1 for m in METALS}


async def test_a_burst_of_ten_events_trains_once_or_twice(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    await backfill_and_sink(pg_settings, kafka_settings, hours=24)
    before = len(await read_all(kafka_settings, BATCH_LOADED))
    hour = ingestor.current_hour()
    burst = [
        BatchLoaded(
            symbols=["XAU"], first_hour=hour, last_hour=hour, rows_inserted=1, ticks_received=1
        )
        for _ in range(10)
    ]
    await produce_raw(kafka_settings, BATCH_LOADED, [(b"b", BATCH_LOADED.encode(e)) for e in burst])
    settings = trainer_settings(pg_settings, kafka_settings, s3_settings, tmp_path)
    async with serving(settings):
        await wait_for_runs(pg_settings, 1)
        await asyncio.sleep(3)  # room for any further run the burst would cause
    runs = await finished_runs(pg_settings)
    assert 1 <= len(runs) <= 2
    assert sum(r["trigger_events"] for r in runs) == before + 10


async def test_bad_windows_fail_per_metal_with_a_reason_and_keep_production(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    settings = trainer_settings(pg_settings, kafka_settings, s3_settings, tmp_path)
    await backfill_and_sink(pg_settings, kafka_settings, hours=24)
    first = await train_once(settings)
    assert first.status == "succeeded"

    # Silver goes constant for the whole window; platinum loses most of its hours.
    conn = await asyncpg.connect(pg_settings.url)
    try:
        await conn.execute(
            "UPDATE analytics.metal_prices SET xag = 31.5 "
            "WHERE ts IN (SELECT ts FROM ml.metal_prices_training)"
        )
        await conn.execute(
            "UPDATE analytics.metal_prices SET xpt = NULL "
            "WHERE ts IN (SELECT ts FROM ml.metal_prices_training ORDER BY ts LIMIT 8)"
        )
    finally:
        await conn.close()
    second = await train_once(settings)

    assert second.status == "partial"
    assert set(second.promoted) == {"XAU", "XPD"}
    assert "constant" in second.failed["XAG"]
    assert "too few rows" in second.failed["XPT"] or "gap" in second.failed["XPT"]
    results = {
        r["symbol"]: r
        for r in await fetch(
            pg_settings, "SELECT * FROM ml.training_results WHERE run_id = $1", second.run_id
        )
    }
    assert results["XAG"]["status"] == "failed"
    assert results["XAG"]["reason"] == second.failed["XAG"]
    assert results["XAU"]["status"] == "promoted"
    production = {
        r["symbol"]: r["version"]
        for r in await fetch(
            pg_settings,
            "SELECT p.symbol, v.version FROM ml.production_models p "
            "JOIN ml.model_versions v ON v.id = p.model_version_id",
        )
    }
    assert production == {"XAU": 2, "XAG": 1, "XPT": 1, "XPD": 2}


async def test_a_window_with_no_data_is_a_failed_run_with_its_cause(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    report = await train_once(trainer_settings(pg_settings, kafka_settings, s3_settings, tmp_path))
    assert report.status == "failed"
    assert report.promoted == {}
    [run] = await finished_runs(pg_settings)
    assert run["status"] == "failed"
    assert "no metal trained" in run["error"]
    assert await fetchval(pg_settings, "SELECT count(*) FROM ml.production_models") == 0


async def test_rollback_and_back_and_refusals(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    settings = trainer_settings(pg_settings, kafka_settings, s3_settings, tmp_path)
    await backfill_and_sink(pg_settings, kafka_settings, hours=24)
    await train_once(settings)
    await train_once(settings)
    s3 = make_s3_client(s3_settings)
    conn = await asyncpg.connect(pg_settings.url)
    try:
        move = await registry.rollback(conn, s3, "XAU", None, "test", tmp_path)
        assert (move.from_version, move.to_version, move.action) == (2, 1, "rollback")
        back = await registry.rollback(conn, s3, "XAU", 2, "test", tmp_path)
        assert (back.from_version, back.to_version) == (1, 2)

        with pytest.raises(registry.RollbackRefused, match="no version 9"):
            await registry.rollback(conn, s3, "XAU", 9, "test", tmp_path)
        # Corrupt v1's file in S3: a rollback to it is refused, the pointer stays on v2.
        v1 = await registry.get_version(conn, "XAU", 1)
        assert v1 is not None
        bucket, key = registry.parse_uri(v1.artifact_uri)
        s3.put_object(Bucket=bucket, Key=key, Body=b"not a model")
        with pytest.raises(registry.RollbackRefused, match="sha256"):
            await registry.rollback(conn, s3, "XAU", 1, "test", tmp_path)
        s3.delete_object(Bucket=bucket, Key=key)
        with pytest.raises(registry.RollbackRefused, match="cannot be downloaded"):
            await registry.rollback(conn, s3, "XAU", 1, "test", tmp_path)
        [current] = [v for v in await registry.production(conn) if v.symbol == "XAU"]
        assert current.version == 2
        history = await conn.fetch(
            "SELECT action, changed_by FROM ml.production_history WHERE symbol = 'XAU' ORDER BY id"
        )
        assert [(h["action"], h["changed_by"]) for h in history] == [
            ("promote", "trainer"),
            ("promote", "trainer"),
            ("rollback", "test"),
            ("rollback", "test"),
        ]
    finally:
        await conn.close()


def test_the_data_scientists_snippet_against_the_real_database(
    pg_settings: PostgresSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    asyncio.run(_analytics_rows(pg_settings, 12))
    monkeypatch.setenv("METALCAST_POSTGRES__URL", pg_settings.url)
    monkeypatch.chdir(tmp_path)

    model = Model(["XAUUSD", "XAGUSD", "XPTUSD", "XPDUSD"], x_size=12, y_size=1)
    model.train()
    model.save("model1")

    assert model.failed == {}
    assert sorted(p.name for p in (tmp_path / "model1").iterdir()) == [
        f"{t}.zip" for t in sorted(TICKERS)
    ]
    generated = Model(TICKERS, x_size=12, y_size=1)
    generated.train(use_generated_data=True)
    assert generated.failed == {}


async def _analytics_rows(pg: PostgresSettings, hours: int) -> None:
    """Realistic hourly rows from the data scientists' generator, written as the sink would."""
    frame = GeneratedData(seed=7).window(TICKERS, hours)
    rows = [(ts.to_pydatetime(), *(float(frame.loc[ts, t]) for t in TICKERS)) for ts in frame.index]
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.executemany(
            "INSERT INTO analytics.metal_prices (ts, xau, xag, xpt, xpd) "
            "VALUES ($1, $2, $3, $4, $5)",
            rows,
        )
    finally:
        await conn.close()

"""The trainer on the real stack: runs, versions, files in S3, failures, rollback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from metalcast_core import (
    BATCH_LOADED,
    METALS,
    MODELS_TRAINED,
    PRODUCTION_CHANGED,
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
    pg: PostgresSettings, kafka: KafkaSettings, s3: S3Settings, work: Path, **trainer: Any
) -> TrainerSettings:
    # 24 origins keep each run to a few seconds here; the defaults (168) are benchmarked.
    options: dict[str, Any] = {
        "backtest_origins": 24,
        "backtest_horizon": 3,
        "min_calibration": 10,
        "metrics_port": 0,  # no /metrics server unless a test asks for one
    } | trainer
    return TrainerSettings(
        postgres=pg,
        kafka=kafka,
        s3=s3,
        trainer=TrainerSection(
            group_id=f"trainer-{uuid.uuid4().hex[:8]}", work_dir=work, **options
        ),
    )


async def add_hours(
    pg: PostgresSettings, values: dict[str, list[float]], start: datetime, step_h: int = 1
) -> list[datetime]:
    """Rows of analytics.metal_prices as the sink writes them: one per hour, a column per
    metal (``NaN`` leaves a metal's column NULL). Returns the hours written."""
    n = len(next(iter(values.values())))
    hours = [start + timedelta(hours=i * step_h) for i in range(n)]
    rows: list[tuple[Any, ...]] = [
        (
            ts,
            *(
                None if col not in values or math.isnan(values[col][i]) else values[col][i]
                for col in ("xau", "xag", "xpt", "xpd")
            ),
        )
        for i, ts in enumerate(hours)
    ]
    rows = [r for r in rows if any(v is not None for v in r[1:])]  # the sink writes no empty row
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.executemany(
            "INSERT INTO analytics.metal_prices (ts, xau, xag, xpt, xpd) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (ts) DO UPDATE SET "
            "xau = EXCLUDED.xau, xag = EXCLUDED.xag, xpt = EXCLUDED.xpt, xpd = EXCLUDED.xpd",
            rows,
        )
    finally:
        await conn.close()
    return hours


def walks(n: int, seed: int) -> dict[str, list[float]]:
    """Generated hourly prices for the four metals (the data scientists' generator)."""
    frame = GeneratedData(seed=seed).window(TICKERS, n)
    return {m.column: [float(v) for v in frame[m.ticker]] for m in METALS}


async def next_hour(pg: PostgresSettings) -> datetime:
    newest: datetime | None = await fetchval(pg, "SELECT max(ts) FROM analytics.metal_prices")
    assert newest is not None
    return newest + timedelta(hours=1)


async def one_more_hour(pg: PostgresSettings, seed: int) -> datetime:
    """A new hour for every metal: each window moves by one entry."""
    ts = await next_hour(pg)
    rng = random.Random(seed)
    conn = await asyncpg.connect(pg.url)
    try:
        last = await conn.fetchrow(
            "SELECT xau, xag, xpt, xpd FROM analytics.metal_prices ORDER BY ts DESC LIMIT 1"
        )
        await conn.execute(
            "INSERT INTO analytics.metal_prices (ts, xau, xag, xpt, xpd) "
            "VALUES ($1, $2, $3, $4, $5)",
            ts,
            *(float(last[c]) * (1 + rng.gauss(0, 0.002)) for c in ("xau", "xag", "xpt", "xpd")),
        )
    finally:
        await conn.close()
    return ts


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
    names = {"arima", "naive", "drift", "theta", "ses"}
    assert {c["name"] for c in json.loads(run["candidates"])} == names

    s3 = make_s3_client(s3_settings)
    async with asyncpg.create_pool(pg_settings.url) as pool, pool.acquire() as conn:
        current = await registry.production(conn)
    assert [v.symbol for v in current] == sorted(m.symbol for m in METALS)
    for v in current:
        assert v.version == 1
        assert v.candidate in names
        assert v.family == v.candidate
        assert v.n_observations == 12
        assert v.window_hours == 12
        assert v.decision is not None
        assert v.decision.startswith("first model")
        summary = v.backtest["summary"]
        assert summary["mase"] > 0
        assert 0 <= summary["coverage_95"] <= 1
        assert v.backtest["origins"] == 24
        assert v.calibration["method"].startswith("sequential split-conformal")
        assert len(v.calibration["q95"]) == 3
        assert v.calibration["scale"] > 0
        path = registry.download_artifact(s3, v.artifact_uri, tmp_path / "dl" / v.symbol)
        assert path.stat().st_size == v.size_bytes
        forecaster = load_forecaster(path)
        [step] = forecaster.predict(fh=[1]).to_numpy().ravel()
        assert step > 0
    backtests = await fetch(
        pg_settings, "SELECT symbol, candidate FROM ml.backtests WHERE run_id = $1", run["id"]
    )
    assert len(backtests) == 4 * len(names)
    event = MODELS_TRAINED.decode((await read_all(kafka_settings, MODELS_TRAINED))[0])
    assert event.run_id == run["id"]
    assert event.versions == {m.symbol: 1 for m in METALS}
    assert set(event.decisions) == {m.symbol for m in METALS}
    moves = [
        PRODUCTION_CHANGED.decode(m) for m in await read_all(kafka_settings, PRODUCTION_CHANGED)
    ]
    assert sorted((m.symbol, m.to_version, m.action) for m in moves) == [
        (m.symbol, 1, "promote") for m in sorted(METALS, key=lambda m: m.symbol)
    ]


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


async def test_the_same_event_twice_and_a_batch_without_metals_make_no_version(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    hours = await add_hours(pg_settings, walks(40, 1), datetime(2026, 3, 2, tzinfo=UTC))
    loaded = BatchLoaded(
        symbols=["XAG", "XAU", "XPD", "XPT"],
        first_hour=hours[0],
        last_hour=hours[-1],
        rows_inserted=160,
        ticks_received=160,
    )
    btc = BatchLoaded(
        symbols=["BTC"],
        first_hour=hours[-1],
        last_hour=hours[-1],
        rows_inserted=1,
        ticks_received=1,
    )
    settings = trainer_settings(pg_settings, kafka_settings, s3_settings, tmp_path)
    versions = "SELECT count(*) FROM ml.model_versions"
    async with serving(settings):
        await produce_raw(kafka_settings, BATCH_LOADED, [(b"k", BATCH_LOADED.encode(loaded))])
        await wait_for_runs(pg_settings, 1)
        assert await fetchval(pg_settings, versions) == 4
        # Redelivered (the outbox republishes at start-up), then a batch of BTC only.
        await produce_raw(kafka_settings, BATCH_LOADED, [(b"k", BATCH_LOADED.encode(loaded))])
        await wait_for_runs(pg_settings, 2)
        await produce_raw(kafka_settings, BATCH_LOADED, [(b"k", BATCH_LOADED.encode(btc))])
        await asyncio.sleep(3)

    runs = await finished_runs(pg_settings)
    assert [r["status"] for r in runs] == ["succeeded", "unchanged"]  # BTC made no run
    assert await fetchval(pg_settings, versions) == 4
    results = await fetch(
        pg_settings,
        "SELECT status, reason FROM ml.training_results WHERE run_id = $1",
        runs[1]["id"],
    )
    assert {r["status"] for r in results} == {"unchanged"}
    assert all("already fits this window" in r["reason"] for r in results)
    # What the first run backtested is reused: the second fitted no origin.
    assert json.loads(runs[1]["timings"])["origins_fitted"] == 0


async def test_weekend_gaps_and_a_daily_only_source_train_and_record_the_span(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    """Gold and platinum trade Mon 00:00 - Fri 21:00 and stop for the weekend; silver and
    palladium come from a daily-only source (one value a day)."""
    start = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
    hours = [start + timedelta(hours=i) for i in range(24 * 14)]
    rng = random.Random(5)
    levels = {"xau": 2650.0, "xag": 31.0, "xpt": 960.0, "xpd": 1000.0}
    values: dict[str, list[float]] = {c: [] for c in levels}
    for ts in hours:
        for col in levels:
            levels[col] *= 1 + rng.gauss(0, 0.002)
        market_open = ts.weekday() < 4 or (ts.weekday() == 4 and ts.hour < 21)
        for col in ("xau", "xpt"):
            values[col].append(levels[col] if market_open else math.nan)
        for col in ("xag", "xpd"):
            values[col].append(levels[col] if ts.hour == 0 else math.nan)
    await add_hours(pg_settings, values, start)
    # Then Monday 00:00-03:00 of the third week: gold's window spans the weekend.
    await add_hours(
        pg_settings,
        {
            "xau": [2700.0, 2701.5, 2699.0, 2702.0],
            "xpt": [990.0, 991.0, 989.5, 992.0],
            "xag": [math.nan] * 4,
            "xpd": [math.nan] * 4,
        },
        start + timedelta(days=14),
    )
    report = await train_once(trainer_settings(pg_settings, kafka_settings, s3_settings, tmp_path))
    assert report.status == "succeeded", report.failed
    assert set(report.versions) == {"XAU", "XAG", "XPT", "XPD"}
    spans = {
        r["symbol"]: (r["window_start"], r["window_end"], r["window_hours"])
        for r in await fetch(
            pg_settings,
            "SELECT symbol, window_start, window_end, window_hours FROM ml.training_results "
            "WHERE run_id = $1",
            report.run_id,
        )
    }
    # gold: the 4 Monday hours and the 8 last hours before Friday 21:00
    friday_first = start + timedelta(days=11, hours=13)
    monday_last = start + timedelta(days=14, hours=3)
    assert spans["XAU"] == (friday_first, monday_last, 63)
    # silver: twelve daily values, the last on day 13
    assert spans["XAG"] == (start + timedelta(days=2), start + timedelta(days=13), 11 * 24 + 1)
    async with asyncpg.create_pool(pg_settings.url) as pool, pool.acquire() as conn:
        xau = await registry.get_version(conn, "XAU", 1)
    assert xau is not None
    assert xau.window_hours == 63
    assert xau.n_observations == 12


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

    # Silver goes constant for the whole window; platinum loses 8 of its last 12 hours.
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
    assert "constant" in second.failed["XAG"]
    assert set(second.failed) == {"XAG"}
    # Platinum's window reaches back over the 8 missing hours; gold and palladium saw no
    # new data: nothing to fit.
    assert set(second.versions) == {"XPT"}
    assert sorted(second.unchanged) == ["XAU", "XPD"]
    results = {
        r["symbol"]: r
        for r in await fetch(
            pg_settings, "SELECT * FROM ml.training_results WHERE run_id = $1", second.run_id
        )
    }
    assert results["XAG"]["status"] == "failed"
    assert results["XAG"]["reason"] == second.failed["XAG"]
    assert results["XPT"]["status"] == "promoted"
    assert results["XPT"]["window_hours"] == 20
    assert results["XAU"]["status"] == "unchanged"
    production = {
        r["symbol"]: r["version"]
        for r in await fetch(
            pg_settings,
            "SELECT p.symbol, v.version FROM ml.production_models p "
            "JOIN ml.model_versions v ON v.id = p.model_version_id",
        )
    }
    assert production == {"XAU": 1, "XAG": 1, "XPT": 2, "XPD": 1}


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


def _trend(n: int, seed: int) -> dict[str, list[float]]:
    """Prices that climb steadily with a little noise: a random walk with drift."""
    rng = random.Random(seed)
    base = {"xau": 2650.0, "xag": 31.0, "xpt": 960.0, "xpd": 1000.0}
    return {
        c: [level * (1 + 0.004 * i + rng.gauss(0, 0.0004)) for i in range(n)]
        for c, level in base.items()
    }


async def test_a_challenger_that_loses_is_kept_out_and_one_that_wins_is_promoted(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    trend = _trend(62, 3)
    start = datetime(2026, 3, 2, tzinfo=UTC)
    await add_hours(pg_settings, {c: v[:60] for c, v in trend.items()}, start)
    naive_only = trainer_settings(
        pg_settings, kafka_settings, s3_settings, tmp_path, candidates=["naive"]
    )
    first = await train_once(naive_only)
    assert first.versions == {m.symbol: 1 for m in METALS}

    # drift beats naive clearly on a trend, but not by the 95% margin asked here: kept.
    strict = trainer_settings(
        pg_settings,
        kafka_settings,
        s3_settings,
        tmp_path,
        candidates=["naive", "drift"],
        promotion_margin=0.95,
    )
    await add_hours(pg_settings, {c: v[:61] for c, v in trend.items()}, start)
    kept = await train_once(strict)
    for m in METALS:
        assert kept.decisions[m.symbol].startswith("kept naive: challenger drift MASE ")
    async with asyncpg.create_pool(pg_settings.url) as pool, pool.acquire() as conn:
        production = {v.symbol: v for v in await registry.production(conn)}
    assert {v.candidate for v in production.values()} == {"naive"}
    assert all(v.decision and v.decision.startswith("kept naive") for v in production.values())

    # With the default 1% margin drift wins and is promoted.
    default = trainer_settings(
        pg_settings, kafka_settings, s3_settings, tmp_path, candidates=["naive", "drift"]
    )
    await add_hours(pg_settings, trend, start)
    won = await train_once(default)
    for m in METALS:
        assert "challenger drift MASE" in won.decisions[m.symbol]
        assert "beats champion naive" in won.decisions[m.symbol]
    async with asyncpg.create_pool(pg_settings.url) as pool, pool.acquire() as conn:
        production = {v.symbol: v for v in await registry.production(conn)}
        shown = await registry.versions(conn, "XAU")
    assert {v.candidate for v in production.values()} == {"drift"}
    assert [v.candidate for v in shown] == ["drift", "naive", "naive"]


async def test_rollback_pins_through_ten_loads_and_unpin_hands_back(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    await add_hours(pg_settings, walks(40, 2), datetime(2026, 3, 2, tzinfo=UTC))
    settings = trainer_settings(
        pg_settings, kafka_settings, s3_settings, tmp_path, candidates=["naive", "drift"]
    )
    await train_once(settings)
    await one_more_hour(pg_settings, 1)
    await train_once(settings)
    s3 = make_s3_client(s3_settings)
    conn = await asyncpg.connect(pg_settings.url)
    try:
        move = await registry.rollback(
            conn, s3, "XAU", None, "alice", tmp_path, reason="v2 looks off"
        )
        assert (move.from_version, move.to_version, move.action) == (2, 1, "rollback")
        assert move.pinned
        for i in range(10):
            await one_more_hour(pg_settings, 100 + i)
            report = await train_once(settings)
            assert "XAU" not in report.promoted
            assert report.decisions["XAU"].startswith("pinned by alice at v1")
        [xau] = [v for v in await registry.production(conn) if v.symbol == "XAU"]
        assert xau.version == 1
        versions = await registry.versions(conn, "XAU")
        assert len(versions) == 12  # the trainer kept recording: v3..v12, not promoted
        pinned_results = await conn.fetch(
            "SELECT status FROM ml.training_results WHERE symbol = 'XAU' AND status = 'pinned'"
        )
        assert len(pinned_results) == 10

        with pytest.raises(registry.RollbackRefused, match="already in production, pinned"):
            await registry.rollback(conn, s3, "XAU", 1, "alice", tmp_path)
        unpinned = await registry.unpin(conn, "XAU", "bob", "checked the feed")
        assert (unpinned.action, unpinned.to_version, unpinned.pinned) == ("unpin", 1, False)
        with pytest.raises(registry.RollbackRefused, match="not pinned"):
            await registry.unpin(conn, "XAU", "bob", None)

        await one_more_hour(pg_settings, 999)
        after = await train_once(settings)
        assert after.promoted["XAU"] == 13
        history = await registry.history(conn, "XAU")
        assert [
            (h["action"], h["changed_by"], h["from_version"], h["to_version"], h["pinned"])
            for h in reversed(history)
        ] == [
            ("promote", "trainer", None, 1, False),
            ("promote", "trainer", 1, 2, False),
            ("rollback", "alice", 2, 1, True),
            ("unpin", "bob", 1, 1, False),
            ("promote", "trainer", 1, 13, False),
        ]
        assert history[2]["note"] == "v2 looks off"
    finally:
        await conn.close()


async def test_rollback_refusals_leave_the_pointer(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    await add_hours(pg_settings, walks(30, 3), datetime(2026, 3, 2, tzinfo=UTC))
    settings = trainer_settings(
        pg_settings, kafka_settings, s3_settings, tmp_path, candidates=["naive"]
    )
    await train_once(settings)
    await one_more_hour(pg_settings, 4)
    await train_once(settings)
    s3 = make_s3_client(s3_settings)
    conn = await asyncpg.connect(pg_settings.url)
    try:
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
        assert await registry.pin(conn, "XAU") is None
    finally:
        await conn.close()


async def test_retention_deletes_only_old_versions_that_never_served(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    await add_hours(pg_settings, walks(30, 6), datetime(2026, 3, 2, tzinfo=UTC))
    settings = trainer_settings(
        pg_settings,
        kafka_settings,
        s3_settings,
        tmp_path,
        candidates=["naive"],
        retention_hours=0,
    )
    await train_once(settings)  # v1 promoted
    s3 = make_s3_client(s3_settings)
    conn = await asyncpg.connect(pg_settings.url)
    try:
        await registry.rollback(conn, s3, "XAU", 1, "ops", tmp_path, reason="freeze")  # pin
        for seed in (1, 2):
            await one_more_hour(pg_settings, seed)
            await train_once(settings)  # XAU v2, v3: recorded, never served
        await registry.unpin(conn, "XAU", "ops", None)
        await one_more_hour(pg_settings, 3)
        await train_once(settings)  # XAU v4 promoted
        await conn.execute(
            "UPDATE ml.model_versions SET created_at = now() - interval '10 days' "
            "WHERE symbol = 'XAU' AND version IN (1, 2, 3)"
        )
        deleted = await registry.retention(conn, s3, 7 * 24 * 3600.0)
        assert deleted == [("XAU", 2), ("XAU", 3)]
        by_version = {v.version: v for v in await registry.versions(conn, "XAU")}
        assert by_version[1].deleted_at is None
        assert by_version[1].ever_production
        assert by_version[4].deleted_at is None
        assert by_version[4].in_production
        for gone in (2, 3):
            assert by_version[gone].deleted_at is not None
            bucket, key = registry.parse_uri(by_version[gone].artifact_uri)
            with pytest.raises(s3.exceptions.ClientError):
                s3.head_object(Bucket=bucket, Key=key)
        assert await registry.retention(conn, s3, 7 * 24 * 3600.0) == []
        with pytest.raises(registry.RollbackRefused, match="no version 2"):
            await registry.rollback(conn, s3, "XAU", 2, "ops", tmp_path)
    finally:
        await conn.close()


async def test_a_killed_trainer_leaves_no_running_run_after_restart(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    await add_hours(pg_settings, walks(12 + 168 + 1, 7), datetime(2026, 3, 2, tzinfo=UTC))
    env = {
        **os.environ,
        "METALCAST_POSTGRES__URL": pg_settings.url,
        "METALCAST_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "METALCAST_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
        "METALCAST_S3__ENDPOINT_URL": s3_settings.endpoint_url or "",
        "METALCAST_S3__MODELS_BUCKET": s3_settings.models_bucket,
        "METALCAST_S3__BACKUPS_BUCKET": s3_settings.backups_bucket,
        "METALCAST_TRAINER__WORK_DIR": str(tmp_path / "killed"),
        "METALCAST_LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "metalcast_trainer",
        "--once",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )
    running = "SELECT count(*) FROM ml.training_runs WHERE status = 'running'"
    try:
        for _ in range(600):  # the backtest of 168 origins takes seconds: kill it mid-run
            if await fetchval(pg_settings, running) == 1:
                break
            assert proc.returncode is None, "the trainer ended before it could be killed"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert proc.returncode is None, "the trainer ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert await fetchval(pg_settings, running) == 1

    report = await train_once(trainer_settings(pg_settings, kafka_settings, s3_settings, tmp_path))
    assert report.status == "succeeded"
    assert await fetchval(pg_settings, running) == 0
    [killed] = await fetch(pg_settings, "SELECT * FROM ml.training_runs ORDER BY id LIMIT 1")
    assert killed["status"] == "failed"
    assert killed["error"].startswith("interrupted")


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

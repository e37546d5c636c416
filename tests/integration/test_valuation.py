"""The gold valuation model on the real servers: macro vintages inserted straight into
``macro.observations`` (as the sink's macro loop writes them) and daily gold from the
simulated source's ticks; a batch-loaded event of gold or of a feature series retrains it as
a run; the LightGBM version is recorded with its grid search, importances and points, the
``XAU-VAL`` pointer goes to the candidate that won the backtest; a revision retrains it; a
fit that cannot be made is a failed run with its cause; ``GET /v1/valuation/gold`` answers
the recorded numbers (404 before) and the page is served."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from pydantic import SecretStr

from metalcast_api import ApiSection, ApiSettings
from metalcast_api.app import create_app
from metalcast_core import (
    BATCH_LOADED,
    MODELS_TRAINED,
    BatchLoaded,
    KafkaSettings,
    PostgresSettings,
    S3Settings,
    create_pool,
    make_consumer,
    make_s3_client,
    publish_once,
)
from metalcast_models.valuation import FAMILY, SYMBOL
from metalcast_models.valuation.data import fetch_vintages
from metalcast_trainer.bootstrap import run_trainer
from metalcast_trainer.config import TrainerSection, TrainerSettings
from metalcast_trainer.valuation import ValuationTrainer
from tests.support import FAST_GROUP, ServerThread, as_role, fetch, fetchval
from tests.valuation_data import SPECS, seed_database

pytestmark = pytest.mark.integration

ORIGINS = 60
SMALL = {
    "x_size": 30,
    "backtest_origins": ORIGINS,
    "refit_every": 20,
    "cv_folds": 3,
    "min_train": 200,
    "grid": {"num_leaves": [7, 15], "learning_rate": [0.1], "n_estimators": [40]},
}


def _settings(
    pg: PostgresSettings, kafka: KafkaSettings, s3: S3Settings, work: Path, **valuation: Any
) -> TrainerSettings:
    section = TrainerSection.model_validate({"work_dir": work, "valuation": {**SMALL, **valuation}})
    return TrainerSettings(postgres=pg, kafka=kafka, s3=s3, trainer=section)


def _loaded(
    table: Literal["prices.ticks", "macro.observations"],
    *symbols: str,
    last: datetime | None = None,
) -> BatchLoaded:
    return BatchLoaded(
        symbols=list(symbols),
        first_hour=last,
        last_hour=last,
        rows_inserted=1,
        ticks_received=1,
        table=table,
    )


async def test_valuation_retrains_on_loads_records_its_fit_and_answers_the_api(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    api_settings = ApiSettings(
        environment="test",
        postgres=as_role(pg_settings, "metalcast_api"),  # each service under its own role
        kafka=kafka_settings,
        s3=s3_settings,
        api=ApiSection(api_key=SecretStr("test-api-key-0123456789")),
    )
    server = ServerThread(create_app(api_settings))
    await asyncio.to_thread(server.__enter__)
    pool = await create_pool(as_role(pg_settings, "metalcast_trainer"))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as api:
            before = await api.get("/v1/valuation/gold")
            assert before.status_code == 404
            assert "no gold valuation model yet" in before.json()["detail"]

            s3 = make_s3_client(s3_settings)
            settings = _settings(
                as_role(pg_settings, "metalcast_trainer"), kafka_settings, s3_settings, tmp_path
            )
            valuation = ValuationTrainer(settings, pool, s3)
            # No daily gold yet: no load retrains it (no run is recorded).
            assert await valuation.wants([_loaded("prices.ticks", "XAU")]) is None

            n_vintages, n_days = await seed_database(pg_settings)
            async with pool.acquire() as conn:
                read = await fetch_vintages(conn, [s.series_id for s in SPECS])
            assert len(read) == n_vintages  # the reader returns every vintage

            assert await valuation.wants([_loaded("prices.ticks", "XAG")]) is None
            assert await valuation.wants([_loaded("macro.observations", "NOTAFEATURE")]) is None
            assert await valuation.wants([_loaded("prices.ticks", "XAU")]) == "XAU loaded"
            why = await valuation.wants([_loaded("macro.observations", "VIXCLS", "NOPE")])
            assert why == "macro series VIXCLS"

            report = await valuation.run("batch-loaded")
            assert report.status == "succeeded", report.error
            run = await fetch(
                pg_settings,
                "SELECT status, family FROM ml.training_runs WHERE id = $1",
                report.run_id,
            )
            assert (run[0]["status"], run[0]["family"]) == ("succeeded", FAMILY)
            versions = await fetch(
                pg_settings,
                "SELECT id, version, family, candidate, hyperparameters FROM ml.model_versions "
                "WHERE symbol = $1 ORDER BY version",
                SYMBOL,
            )
            gbm = [v for v in versions if v["family"] == FAMILY]
            assert len(gbm) == 1
            fit = (
                await fetch(
                    pg_settings,
                    "SELECT * FROM ml.valuation_fits WHERE model_version_id = $1",
                    gbm[0]["id"],
                )
            )[0]
            search = json.loads(fit["search"])
            assert search["grid"] == SMALL["grid"]
            assert len(search["results"]) == 2
            assert search["best_params"] in [r["params"] for r in search["results"]]
            assert json.loads(gbm[0]["hyperparameters"]) == search["best_params"]
            importances = json.loads(fit["importances"])
            assert sum(importances.values()) == pytest.approx(1.0)
            counts = dict(
                await fetch(
                    pg_settings,
                    "SELECT kind, count(*) FROM ml.valuation_points WHERE model_version_id = $1 "
                    "GROUP BY kind",
                    gbm[0]["id"],
                )
            )
            assert counts["backtest"] == ORIGINS
            assert counts["fitted"] == n_days - 1  # the first day has no previous close

            # The pointer is on the candidate the backtest chose, LightGBM only if it won.
            result = (
                await fetch(
                    pg_settings,
                    "SELECT status, decision, model_version_id FROM ml.training_results "
                    "WHERE run_id = $1 AND symbol = $2",
                    report.run_id,
                    SYMBOL,
                )
            )[0]
            decision = json.loads(result["decision"])
            assert set(decision["backtest"]) == {"naive", "arima", "lightgbm"}
            serving = await fetchval(
                pg_settings,
                "SELECT v.candidate FROM ml.production_models AS p "
                "JOIN ml.model_versions AS v ON v.id = p.model_version_id WHERE p.symbol = $1",
                SYMBOL,
            )
            assert serving == decision["chosen"]
            assert fit["promoted"] == (decision["chosen"] == "lightgbm")
            assert result["status"] == "promoted"

            body = (await api.get("/v1/valuation/gold", params={"days": 100})).json()
            assert body["model"]["version"] == gbm[0]["version"]
            assert body["model"]["in_production"] == fit["promoted"]
            assert body["production"]["candidate"] == decision["chosen"]
            assert len(body["fitted"]) == 100
            assert len(body["backtest_points"]) == ORIGINS
            last = await fetch(
                pg_settings,
                "SELECT date, actual, value FROM ml.valuation_points WHERE model_version_id = $1 "
                "AND kind = 'fitted' ORDER BY date DESC LIMIT 1",
                gbm[0]["id"],
            )
            assert body["latest"]["date"] == last[0]["date"].isoformat()
            assert body["latest"]["fitted"] == last[0]["value"]
            assert body["latest"]["residual"] == pytest.approx(last[0]["actual"] - last[0]["value"])
            assert body["latest"]["valuation"] in {"over-valued", "under-valued", "fair"}
            top = [f["name"] for f in body["top_features"]]
            assert top == sorted(importances, key=lambda k: importances[k], reverse=True)[:10]
            assert body["backtest"] == json.loads(fit["backtest"])
            assert body["backtest"]["naive"]["mae_ratio"] == pytest.approx(1.0)
            assert body["search"]["best_params"] == search["best_params"]
            fallbacks = sum(p["fallback"] for p in body["backtest_points"])
            assert body["backtest"]["lightgbm"]["fallbacks"] == fallbacks

            # Gold loads retrain it once a day has completed after the newest fit's last day.
            fitted_to = datetime(2018, 12, 31, 20, tzinfo=UTC)
            same_day = _loaded("prices.ticks", "XAU", last=fitted_to)
            assert await valuation.wants([same_day]) is None
            next_day = _loaded("prices.ticks", "XAU", last=fitted_to + timedelta(days=1))
            assert await valuation.wants([next_day]) == "XAU loaded"
            live = ValuationTrainer(settings, pool, s3, today=lambda: date(2019, 1, 1))
            assert await live.wants([next_day]) is None  # 2019-01-01's close is not final yet
            assert await live.wants([_loaded("macro.observations", "AAA")]) == "macro series AAA"

            # The same inputs again (a replayed load): recorded as unchanged, nothing refitted.
            replay = await valuation.run("batch-loaded")
            assert replay.status == "unchanged"
            assert replay.unchanged == [SYMBOL]

            # Its versions and pointer through the models endpoints, like any symbol's.
            listed = await api.get(f"/v1/models/{SYMBOL}/versions")
            assert listed.status_code == 200, listed.text
            assert gbm[0]["version"] in {v["version"] for v in listed.json()}
            production = (await api.get(f"/v1/models/{SYMBOL}/production")).json()
            assert production["candidate"] == decision["chosen"]

            page = await api.get("/valuation")
            assert page.status_code == 200
            assert "valuation.js" in page.text
            assert (await api.get("/static/valuation.js")).status_code == 200

            # A revision of a feature series retrains: a new LightGBM version; the winning
            # baseline is reused when it already fits this window.
            # (written as the sink's macro loop would: the trainer's role may only read it)
            await fetch(
                pg_settings,
                """
                INSERT INTO macro.observations
                    (series_id, date, realtime_start, realtime_end, value, fetched_at)
                SELECT series_id, date, realtime_start + 1, '9999-12-31', value * 1.01, now()
                FROM macro.observations WHERE series_id = 'VIXCLS'
                ORDER BY date DESC, realtime_start DESC LIMIT 1
                """,
            )
            again = await valuation.run("batch-loaded")
            assert again.status == "succeeded", again.error
            after = await fetch(
                pg_settings,
                "SELECT family, candidate FROM ml.model_versions WHERE symbol = $1",
                SYMBOL,
            )
            assert sum(1 for v in after if v["family"] == FAMILY) == 2
            if decision["chosen"] != "lightgbm":
                baselines = [v for v in after if v["family"] != FAMILY]
                assert len(baselines) == 1  # the same window: no second fit of it

            # Too little data for the configuration: a failed run with its cause.
            strict = ValuationTrainer(
                _settings(pg_settings, kafka_settings, s3_settings, tmp_path, min_train=5000),
                pool,
                s3,
            )
            failed = await strict.run("manual")
            assert failed.status == "failed"
            row = await fetch(
                pg_settings,
                "SELECT r.status, r.error, t.reason FROM ml.training_runs AS r "
                "JOIN ml.training_results AS t ON t.run_id = r.id WHERE r.id = $1",
                failed.run_id,
            )
            assert row[0]["status"] == "failed"
            assert "too few daily gold closes" in row[0]["error"]
            assert row[0]["reason"] == row[0]["error"]
    finally:
        await pool.close()
        await asyncio.to_thread(server.__exit__, None, None, None)


async def test_a_macro_load_event_on_kafka_retrains_the_running_trainer(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    """The trainer service as it runs: a ``BatchLoaded`` of ``macro.observations`` on
    ``pipeline.batch-loaded.v1`` (as the sink's macro loop publishes it) retrains the
    valuation model; the run is recorded and announced on ``models.trained.v1``."""
    await seed_database(pg_settings)
    section = TrainerSection.model_validate(
        {"work_dir": tmp_path, "metrics_port": 0, "valuation": SMALL}
    )
    settings = TrainerSettings(
        postgres=pg_settings, kafka=kafka_settings, s3=s3_settings, trainer=section
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_trainer(settings, stop, consumer_options=FAST_GROUP))
    trained = make_consumer(
        kafka_settings,
        [kafka_settings.topic_name(MODELS_TRAINED)],
        group_id=f"test-{uuid.uuid4()}",
        auto_offset_reset="earliest",
    )
    await trained.start()
    try:
        event = _loaded("macro.observations", "VIXCLS", "DGS10")
        await publish_once(kafka_settings, BATCH_LOADED, [("VIXCLS", event)])
        deadline = asyncio.get_running_loop().time() + 120
        announced = None
        while announced is None:
            assert asyncio.get_running_loop().time() < deadline, "no valuation run announced"
            batches = await trained.getmany(timeout_ms=1000)
            for record in (r for rs in batches.values() for r in rs):
                decoded = MODELS_TRAINED.decode(record.value)
                if SYMBOL in decoded.versions:
                    announced = decoded
    finally:
        await trained.stop()
        stop.set()
        await asyncio.wait_for(task, 60)
    assert announced.trigger_batch_id == event.batch_id
    assert announced.status == "succeeded"
    run = await fetch(
        pg_settings,
        "SELECT status, trigger, family FROM ml.training_runs WHERE id = $1",
        announced.run_id,
    )
    assert (run[0]["status"], run[0]["trigger"], run[0]["family"]) == (
        "succeeded",
        "batch-loaded",
        FAMILY,
    )
    # no metal was in the load: the valuation run is the only one
    assert await fetchval(pg_settings, "SELECT count(*) FROM ml.training_runs") == 1

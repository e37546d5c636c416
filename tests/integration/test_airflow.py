"""The Airflow DAGs on the real stack, in Airflow's own venv (built on first use, ~5 s with
uv's cache; then ~5 s for the DagBag and ~15 s per ``dag.test()``).

The tests use their own Airflow metadata database (``airflow_test``) and home, so a running
``metalcast stack up --with-airflow`` scheduler never sees their runs; the tasks get the
test's database, buckets and topic prefix through ``METALCAST_*``.
"""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from metalcast.stack import StackConfig, airflow, postgres_bin_dir
from metalcast.stack.postgres import Postgres
from metalcast_backup.store import BackupStore
from metalcast_core import KafkaSettings, PostgresSettings, S3Settings, make_s3_client
from tests.conftest import REPO, Stack
from tests.integration.test_backup import seed_ticks, seed_training

pytestmark = pytest.mark.integration

RUNNER = REPO / "airflow" / "tests" / "dag_runner.py"
METADATA_DB = "airflow_test"


@dataclass
class AirflowVenv:
    config: StackConfig
    env: dict[str, str]

    def run(self, args: list[str], extra_env: dict[str, str] | None = None) -> tuple[Any, str]:
        result = subprocess.run(
            [str(airflow.airflow_python(self.config)), str(RUNNER), str(airflow.dags_dir()), *args],
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        output = result.stdout + result.stderr
        lines = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")]
        assert result.returncode == 0, output[-5000:]
        assert lines, output[-5000:]
        return json.loads(lines[-1].removeprefix("RESULT ")), output


@pytest.fixture(scope="session")
def airflow_venv(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AirflowVenv:
    if stack.kind != "local":
        pytest.skip("Airflow's venv runs beside the local stack only")
    config = StackConfig.from_environ()
    home = tmp_path_factory.mktemp("airflow-home")
    airflow.install(config, home / "install.log")
    postgres = Postgres(config)
    if postgres.psql(f"SELECT 1 FROM pg_database WHERE datname = '{METADATA_DB}'") != "1":
        postgres.psql(f'CREATE DATABASE "{METADATA_DB}"')
    env = airflow.airflow_env(config)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                f"postgresql+psycopg2://postgres@{config.host}:{config.pg_port}/{METADATA_DB}"
            ),
            "METALCAST_BACKUP__PG_BIN_DIR": postgres_bin_dir(),
        }
    )
    migrated = subprocess.run(
        [str(airflow.airflow_bin(config)), "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
    return AirflowVenv(config, env)


def test_dagbag_has_no_import_errors_and_the_schedules_are_the_issue_s(
    airflow_venv: AirflowVenv,
) -> None:
    bag, _ = airflow_venv.run(["bag"])
    assert bag["import_errors"] == {}
    backup, watch = bag["dags"]["metalcast_backup"], bag["dags"]["metalcast_watch"]
    assert backup["schedule"] == "0 */6 * * *"
    assert backup["tasks"] == ["backup", "prune", "verify"]
    assert backup["retries"]["backup"] >= 1
    assert backup["backoff"]["backup"] is True
    assert watch["schedule"] == "@hourly"
    assert watch["tasks"] == ["check_pipeline"]
    assert not backup["catchup"]
    assert not watch["catchup"]
    macro = bag["dags"]["metalcast_macro"]
    assert macro["schedule"] == "30 22 * * *"
    assert macro["tasks"] == ["pull_macro"]
    assert macro["retries"]["pull_macro"] >= 1
    assert not macro["catchup"]


def _env(pg: PostgresSettings, **more: str) -> dict[str, str]:
    return {"METALCAST_POSTGRES__URL": pg.url, **more}


async def test_backup_dag_makes_a_complete_verified_backup(
    airflow_venv: AirflowVenv,
    pg_settings: PostgresSettings,
    s3_settings: S3Settings,
    offsite_s3: S3Settings,
) -> None:
    client = make_s3_client(s3_settings)
    await seed_ticks(pg_settings, 2_000)
    await seed_training(pg_settings, s3_settings, client)
    env = _env(
        pg_settings,
        METALCAST_S3__MODELS_BUCKET=s3_settings.models_bucket,
        METALCAST_S3__BACKUPS_BUCKET=s3_settings.backups_bucket,
        METALCAST_BACKUP__OFFSITE__BUCKET=offsite_s3.backups_bucket,
    )
    result, output = airflow_venv.run(["test", "metalcast_backup"], env)
    assert result["state"] == "success", output[-5000:]
    assert result["tasks"] == {"backup": "success", "verify": "success", "prune": "success"}
    store = BackupStore(client, s3_settings.backups_bucket, "backups/")
    (backup_id,) = store.backup_ids()
    manifest = store.read_manifest(backup_id)
    assert manifest is not None
    assert manifest.status == "complete"
    assert manifest.verification is not None
    assert manifest.verification.status == "passed"
    assert manifest.tables["prices.ticks"] == 2_000
    assert len(manifest.models) == 8
    # Off the box too (the local Airflow gets the stack's second MinIO).
    assert [t.name for t in manifest.targets] == ["primary", "offsite"]
    offsite = BackupStore(make_s3_client(offsite_s3), offsite_s3.backups_bucket, "backups/")
    assert offsite.backup_ids() == [backup_id]


async def test_watch_dag_passes_on_fresh_data_and_fails_on_stale_data(
    airflow_venv: AirflowVenv, pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    suffix = uuid.uuid4().hex[:8]
    env = _env(
        pg_settings,
        METALCAST_KAFKA__TOPIC_PREFIX=kafka_settings.topic_prefix,
        METALCAST_WATCH__SINK_GROUP=f"sink-{suffix}",
        METALCAST_WATCH__TRAINER_GROUP=f"trainer-{suffix}",
        METALCAST_WATCH__MAX_TICK_AGE_MINUTES="120",
    )
    await seed_ticks(pg_settings, 400)
    fresh, output = airflow_venv.run(["test", "metalcast_watch"], env)
    assert fresh["state"] == "success", output[-5000:]

    conn = await asyncpg.connect(pg_settings.url)
    try:
        await conn.execute("DELETE FROM prices.ticks")
    finally:
        await conn.close()
    await seed_ticks(pg_settings, 400, newest=datetime.now(UTC) - timedelta(hours=5))
    stale, output = airflow_venv.run(["test", "metalcast_watch"], env)
    assert stale["state"] == "failed"
    assert stale["tasks"] == {"check_pipeline": "failed"}
    assert "metalcast watch FAILED" in output
    assert "stale data: the newest XAU tick is" in output


def test_local_airflow_env_reaches_our_code() -> None:
    """What the stack's Airflow processes get: the stack's servers and pg_dump, 127.0.0.1."""
    env = airflow.airflow_env(StackConfig.from_environ())
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert Path(env["METALCAST_BACKUP__PG_BIN_DIR"], "pg_dump").is_file()
    assert env["METALCAST_POSTGRES__URL"].startswith("postgresql://")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO / "airflow" / "dags")


def test_market_data_bulk_dag_runs_stocks_and_etfs_in_parallel_one_task_per_stage(
    airflow_venv: AirflowVenv,
) -> None:
    bag, _ = airflow_venv.run(["bag"])
    assert bag["import_errors"] == {}
    bulk = bag["dags"]["market_data_bulk"]
    assert bulk["tasks"] == ["features", "ingest_etfs", "ingest_stocks", "plan", "publish", "train"]
    assert bulk["upstream"] == {
        "plan": [],
        "ingest_stocks": ["plan"],
        "ingest_etfs": ["plan"],  # beside ingest_stocks, not after it
        "publish": ["ingest_etfs", "ingest_stocks", "plan"],
        "features": ["plan", "publish"],
        "train": ["features", "plan"],
    }
    assert all(n >= 2 for n in bulk["retries"].values()), bulk["retries"]
    assert all(bulk["backoff"].values())
    assert not bulk["catchup"]


def test_market_data_bulk_dag_publishes_prices_features_and_a_model(
    airflow_venv: AirflowVenv,
    pg_settings: PostgresSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    from tests.bulk_support import real_market_dir

    real_market_dir(tmp_path / "in")
    env = _env(
        pg_settings,
        METALCAST_S3__MODELS_BUCKET=s3_settings.models_bucket,
        METALCAST_S3__BACKUPS_BUCKET=s3_settings.backups_bucket,
        METALCAST_BULK__INPUT_URL=str(tmp_path / "in"),
        METALCAST_BULK__DATA_URL=f"s3://{s3_settings.models_bucket}/bulk",
        METALCAST_BULK__WORK_DIR=str(tmp_path / "work"),
        METALCAST_BULK__NUM_BOOST_ROUND="30",
    )
    result, output = airflow_venv.run(["test", "market_data_bulk"], env)
    assert result["state"] == "success", output[-5000:]
    assert set(result["tasks"].values()) == {"success"}
    client = make_s3_client(s3_settings)
    keys = {
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=s3_settings.models_bucket
        )
        for o in page.get("Contents", [])
    }
    assert {
        "bulk/prices/CURRENT",
        "bulk/features/CURRENT",
        "models/VOLUME/1/volume.lgb.txt",
    } <= keys


@contextmanager
def fred_server() -> Iterator[str]:
    """FRED's /fred/series/observations on 127.0.0.1, answering recorded payloads by series
    (DGS10, DTWEXBGS; any other series: FRED's "series does not exist" error)."""
    from tests.unit.ingestor.ingestor_kit import FIXTURES

    answers = {
        "DGS10": FIXTURES / "fred" / "observations_DGS10.json",
        "DTWEXBGS": FIXTURES / "fred" / "observations_DTWEXBGS_first.json",
    }
    unknown = json.loads((FIXTURES / "fred" / "error_unknown_series.response.json").read_text())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            series = parse_qs(url.query).get("series_id", [""])[0]
            if url.path != "/fred/series/observations" or series not in answers:
                status, body = 400, json.dumps(unknown["body"]).encode()
            else:
                status, body = 200, answers[series].read_bytes()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(10)


async def test_macro_dag_pulls_fred_into_the_macro_table(
    airflow_venv: AirflowVenv, pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    """The daily pull on the real Airflow against a local FRED: the observations land (a
    series FRED refuses failing the task is tested in test_macro_ingest.py: here the task's
    retries would wait for minutes)."""
    from metalcast_sink.bootstrap import run_macro_sink
    from tests.support import FAST_GROUP, sink_settings

    sink = sink_settings(pg_settings, kafka_settings)
    sink.sink.macro_group_id = f"macro-{uuid.uuid4().hex[:8]}"
    with fred_server() as fred:
        env = _env(
            pg_settings,
            METALCAST_KAFKA__TOPIC_PREFIX=kafka_settings.topic_prefix,
            METALCAST_INGEST__FRED_API_KEY="f" * 32,
            METALCAST_INGEST__FRED_BASE_URL=fred,
            METALCAST_INGEST__MACRO_SERIES='["DGS10", "DTWEXBGS"]',
        )
        pulled, output = airflow_venv.run(["test", "metalcast_macro"], env)
    assert pulled["state"] == "success", output[-5000:]
    assert pulled["tasks"] == {"pull_macro": "success"}
    assert '"by_series": {"DGS10": 7, "DTWEXBGS": 6}' in output
    assert "f" * 32 not in output
    stats = await run_macro_sink(sink, until_idle=True, consumer_options=FAST_GROUP)
    assert stats.rows_written == 7 + 6
    conn = await asyncpg.connect(pg_settings.url)
    try:
        rows = await conn.fetch(
            "SELECT series_id, count(*) AS n, count(value) AS valued FROM macro.observations "
            "GROUP BY series_id ORDER BY series_id"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [("DGS10", 7, 6), ("DTWEXBGS", 6, 6)]

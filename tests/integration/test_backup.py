"""Backups on the real stack: complete, verified, retention, restore drill, failure halfway."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from metalcast.stack import StackConfig, postgres_bin_dir
from metalcast.stack.minio import MinIO, S3Server, s3_settings
from metalcast.stack.seaweedfs import SeaweedFS
from metalcast_backup.bootstrap import build_service
from metalcast_backup.config import BackupSection, BackupSettings
from metalcast_backup.dump import PgTarget, count_rows_in, database_exists, drop_database
from metalcast_backup.service import BackupFailed, RefusedError
from metalcast_core import METALS, KafkaSettings, PostgresSettings, S3Settings, make_s3_client
from metalcast_sink.writer import copy_ticks
from tests.conftest import Stack
from tests.support import fetchval

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration


def backup_settings(pg: PostgresSettings, s3: S3Settings, **backup: object) -> BackupSettings:
    section = BackupSection.model_validate({"pg_bin_dir": postgres_bin_dir(), **backup})
    return BackupSettings(postgres=pg, s3=s3, backup=section)


async def seed_ticks(pg: PostgresSettings, n: int, *, newest: datetime | None = None) -> None:
    """``n`` ticks spread over the metals, one a minute back from ``newest``."""
    end = newest or datetime.now(UTC)
    conn = await asyncpg.connect(pg.url)
    try:
        records = [
            (
                METALS[i % 4].symbol,
                "seed",
                "spot",
                end - timedelta(minutes=i // 4),
                1000.0 + i % 97,
                "USD",
                end,
                None,
            )
            for i in range(n)
        ]
        await copy_ticks(conn, records)
    finally:
        await conn.close()


async def seed_training(pg: PostgresSettings, s3: S3Settings, client: S3Client) -> dict[str, bytes]:
    """The shape the trainer leaves behind (a run, two versions per metal, the production
    pointers, files at models/<SYMBOL>/<version>/<TICKER>.zip with their sha256 in the
    object's metadata), with random bytes: the backup mechanics do not care what a zip
    holds. The restore drill uses the real trainer instead."""
    files: dict[str, bytes] = {}
    conn = await asyncpg.connect(pg.url)
    try:
        now = datetime.now(UTC)
        run_id = await conn.fetchval(
            "INSERT INTO ml.training_runs (trigger, family, x_size, y_size, status, finished_at) "
            "VALUES ('manual', 'arima', 12, 1, 'succeeded', now()) RETURNING id"
        )
        for metal in METALS:
            for version in (1, 2):
                key = f"models/{metal.symbol}/{version}/{metal.ticker}.zip"
                data = os.urandom(11_000 + version)
                digest = hashlib.sha256(data).hexdigest()
                client.put_object(
                    Bucket=s3.models_bucket, Key=key, Body=data, Metadata={"sha256": digest}
                )
                files[key] = data
                version_id = await conn.fetchval(
                    "INSERT INTO ml.model_versions (symbol, version, run_id, family, model_class, "
                    "window_start, window_end, n_observations, artifact_uri, sha256, size_bytes) "
                    "VALUES ($1, $2, $3, 'arima', 'ARIMA', $4, $5, 12, $6, $7, $8) RETURNING id",
                    metal.symbol,
                    version,
                    run_id,
                    now - timedelta(hours=12),
                    now,
                    f"s3://{s3.models_bucket}/{key}",
                    digest,
                    len(data),
                )
            await conn.execute(
                "INSERT INTO ml.production_models (symbol, model_version_id, updated_by) "
                "VALUES ($1, $2, 'test')",
                metal.symbol,
                version_id,
            )
    finally:
        await conn.close()
    return files


def model_files(client: S3Client, bucket: str) -> dict[str, bytes]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def empty_bucket(client: S3Client, bucket: str) -> None:
    for key in model_files(client, bucket):
        client.delete_object(Bucket=bucket, Key=key)


async def test_a_backup_is_complete_verified_and_recorded(
    pg_settings: PostgresSettings, s3_settings: S3Settings
) -> None:
    client = make_s3_client(s3_settings)
    await seed_ticks(pg_settings, 5_000)
    files = await seed_training(pg_settings, s3_settings, client)
    service = build_service(backup_settings(pg_settings, s3_settings), client=client)

    manifest, verification, plan = await service.run_verify_prune()

    live_counts = await count_rows_in(PgTarget(pg_settings.url))
    assert manifest.status == "complete"
    assert manifest.tables["prices.ticks"] == 5_000
    assert manifest.tables["ml.model_versions"] == 8
    # Every table of the database, counted in the dumped snapshot; since then only the
    # backup's own records changed.
    ops = {"ops.backups", "ops.backup_verifications"}
    assert {k: v for k, v in manifest.tables.items() if k not in ops} == {
        k: v for k, v in live_counts.items() if k not in ops
    }
    assert {m.key: m.sha256 for m in manifest.models} == {
        k: hashlib.sha256(v).hexdigest() for k, v in files.items()
    }
    assert manifest.database is not None
    assert manifest.database.server_version.startswith("18")
    assert "18." in manifest.database.pg_dump_version
    assert manifest.dump is not None
    assert manifest.dump.size_bytes > 0
    assert manifest.tool == "metalcast-backup"
    assert manifest.tool_version
    assert {"pg_dump", "count_rows", "copy_models", "upload_dump", "total"} <= set(
        manifest.durations_s
    )
    # In S3: the manifest (with the verification), the dump, the model files in one tar.
    stored = model_files(client, s3_settings.backups_bucket)
    root = f"backups/{manifest.backup_id}/"
    assert set(stored) == {
        f"{root}manifest.json",
        f"{root}database.dump",
        f"{root}models.tar",
    }
    again = service.store.read_manifest(manifest.backup_id)
    assert again is not None
    assert again.verification is not None
    assert again.verification.status == "passed"
    assert verification.tables_checked == len(manifest.tables)
    assert verification.models_checked == 8
    assert plan.delete == ()
    # Recorded in the database too, and the scratch database is gone.
    conn = await asyncpg.connect(pg_settings.url)
    try:
        row = await conn.fetchrow(
            "SELECT * FROM ops.backups_overview WHERE id = $1", manifest.backup_id
        )
    finally:
        await conn.close()
    assert row is not None
    assert (row["status"], row["verify_status"], row["models"]) == ("complete", "passed", 8)
    assert not await database_exists(PgTarget(pg_settings.url).admin, verification.scratch_database)


async def test_twenty_five_backups_leave_exactly_the_newest_twenty(
    pg_settings: PostgresSettings, s3_settings: S3Settings
) -> None:
    client = make_s3_client(s3_settings)
    await seed_ticks(pg_settings, 200)
    await seed_training(pg_settings, s3_settings, client)
    service = build_service(backup_settings(pg_settings, s3_settings), client=client)
    made = []
    for _ in range(25):
        manifest, _, _ = await service.run_verify_prune()
        made.append(manifest.backup_id)
    assert service.store.backup_ids() == made[-20:]
    assert [m.backup_id for m in await service.list()] == made[-20:]
    conn = await asyncpg.connect(pg_settings.url)
    try:
        statuses = dict(await conn.fetch("SELECT id, status FROM ops.backups"))
    finally:
        await conn.close()
    assert [statuses[b] for b in made] == ["deleted"] * 5 + ["complete"] * 20


async def test_verify_and_restore_refuse_the_live_database(
    pg_settings: PostgresSettings, s3_settings: S3Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = PgTarget(pg_settings.url).database
    # Make verify's random scratch name come out as the live database's own name: verify
    # itself must refuse to restore into it (and drop it afterwards).
    service = build_service(backup_settings(pg_settings, s3_settings, scratch_prefix=""))
    manifest = await service.run()
    monkeypatch.setattr("metalcast_backup.verify.secrets.token_hex", lambda _n: live)
    with pytest.raises(RefusedError, match="live database"):
        await service.verify(manifest.backup_id)
    assert await fetchval(pg_settings, "SELECT count(*) FROM ops.backups") >= 1  # still here
    monkeypatch.undo()
    with pytest.raises(RefusedError, match="live database"):
        await service.restore(manifest.backup_id, live)
    other = f"restore_{uuid.uuid4().hex[:8]}"
    try:
        with pytest.raises(RefusedError, match="leaves the live models bucket alone"):
            await service.restore(manifest.backup_id, other, models=True)
        report = await service.restore(manifest.backup_id, other)
        assert report.problems == []
        assert report.models == 0
        assert "the models bucket was not touched" in "\n".join(report.lines())
        assert not report.replaced_existing
        with pytest.raises(RefusedError, match="exists"):
            await service.restore(manifest.backup_id, other)
    finally:
        await drop_database(PgTarget(pg_settings.url).admin, other)


async def test_restore_drill(
    stack: Stack,
    pg_settings: PostgresSettings,
    s3_settings: S3Settings,
    kafka_settings: KafkaSettings,
    offsite_s3: S3Settings,
    tmp_path: Path,
) -> None:
    """Ingest, train, back up; drop the database and empty the models bucket; restore with
    the CLI: the same row counts, the same model files."""
    from metalcast_ingestor import bootstrap as ingestor
    from metalcast_ingestor.config import IngestorSettings
    from metalcast_sink.bootstrap import run_sink
    from metalcast_trainer.bootstrap import train_once
    from metalcast_trainer.config import TrainerSection, TrainerSettings
    from tests.support import sink_settings

    client = make_s3_client(s3_settings)
    end = ingestor.current_hour() + timedelta(hours=1)
    ingest = IngestorSettings(postgres=pg_settings, kafka=kafka_settings)
    trainer = TrainerSettings(
        postgres=pg_settings,
        kafka=kafka_settings,
        s3=s3_settings,
        trainer=TrainerSection(work_dir=tmp_path),
    )
    published = {"published": 0}
    # Two loads, each followed by a run: each run sees a new hour, so makes new versions.
    last_hour = end - timedelta(hours=1)
    for start, stop in ((end - timedelta(hours=48), last_hour), (last_hour, end)):
        stats = await ingestor.backfill(ingest, "simulated", start, stop)
        published["published"] += stats["published"]
        await run_sink(sink_settings(pg_settings, kafka_settings), until_idle=True)
        assert (await train_once(trainer)).status == "succeeded"
    assert published["published"] > 0
    files = model_files(client, s3_settings.models_bucket)
    assert len(files) == 2 * len(METALS)

    env = {
        **stack.env,
        "METALCAST_POSTGRES__URL": pg_settings.url,
        "METALCAST_S3__MODELS_BUCKET": s3_settings.models_bucket,
        "METALCAST_S3__BACKUPS_BUCKET": s3_settings.backups_bucket,
        "METALCAST_BACKUP__OFFSITE__BUCKET": offsite_s3.backups_bucket,  # off the box too
    }
    from metalcast.cli import app

    runner = CliRunner()
    result = await asyncio.to_thread(runner.invoke, app, ["backup", "run"], env=env)
    assert result.exit_code == 0, result.output
    found = re.search(r"backup (\d{8}T\d{6}\.\d{6}Z) complete", result.output)
    assert found is not None, result.output
    backup_id = found.group(1)
    result = await asyncio.to_thread(runner.invoke, app, ["backup", "list"], env=env)
    assert re.search(rf"{backup_id} .* primary,offsite ", result.output), result.output
    before = await count_rows_in(PgTarget(pg_settings.url))
    assert before["prices.ticks"] == published["published"]
    api_before = await asyncio.to_thread(api_answers, pg_settings, kafka_settings, s3_settings)

    live = PgTarget(pg_settings.url)
    await drop_database(live.admin, live.database)
    empty_bucket(client, s3_settings.models_bucket)
    assert model_files(client, s3_settings.models_bucket) == {}

    result = await asyncio.to_thread(
        runner.invoke, app, ["backup", "restore", backup_id, "--into", live.database], env=env
    )
    assert result.exit_code == 1
    assert "--force" in result.output
    result = await asyncio.to_thread(
        runner.invoke,
        app,
        ["backup", "restore", backup_id, "--into", live.database, "--force"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert f"restored backup {backup_id}" in result.output
    after = await count_rows_in(live)
    ops = {"ops.backups", "ops.backup_verifications"}
    assert {k: v for k, v in after.items() if k not in ops} == {
        k: v for k, v in before.items() if k not in ops
    }
    assert model_files(client, s3_settings.models_bucket) == files
    # The restored database lists its own backup as complete and verified again.
    conn = await asyncpg.connect(pg_settings.url)
    try:
        row = await conn.fetchrow("SELECT * FROM ops.backups_overview WHERE id = $1", backup_id)
    finally:
        await conn.close()
    assert row is not None
    assert (row["status"], row["verify_status"]) == ("complete", "passed")
    assert (
        await asyncio.to_thread(api_answers, pg_settings, kafka_settings, s3_settings) == api_before
    )


def api_answers(pg: PostgresSettings, kafka: KafkaSettings, s3: S3Settings) -> object:
    """What the API answers about prices, production models and a forecast (the fields that
    do not move with the clock), from a real server on the restored database."""
    from metalcast_api import ApiSettings
    from metalcast_api.app import create_app
    from tests.support import ServerThread

    settings = ApiSettings(environment="test", postgres=pg, kafka=kafka, s3=s3)
    with ServerThread(create_app(settings)) as server, httpx.Client(base_url=server.url) as http:
        latest = http.get("/v1/prices/latest").raise_for_status().json()
        production = http.get("/v1/models/production").raise_for_status().json()
        forecast = http.get("/v1/forecasts/XAU", params={"horizon": 3}).raise_for_status().json()
    return (
        sorted((p["symbol"], p["price"], p["observed_at"], p["source"]) for p in latest),
        sorted((m["symbol"], m["version"], m["sha256"]) for m in production),
        (forecast["model"]["version"], [(s["ts"], s["point"]) for s in forecast["steps"]]),
    )


# --- a backup that fails halfway: S3 killed mid-backup ------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_s3(stack: Stack, tmp_path: Path) -> Iterator[tuple[S3Server, S3Settings]]:
    """An S3 server of this test alone (same implementation as the stack's), to kill."""
    base = StackConfig.from_environ()
    config = StackConfig(
        stack_dir=tmp_path / "stack",
        cache_dir=base.cache_dir,
        s3_port=_free_port(),
        s3_console_port=_free_port(),
    )
    server: S3Server = MinIO(config) if MinIO(base).binary.is_file() else SeaweedFS(config)
    server.start()
    try:
        yield server, s3_settings(config)
    finally:
        server.stop()


async def test_a_backup_that_fails_halfway_deletes_nothing_and_is_marked_failed(
    pg_settings: PostgresSettings, private_s3: tuple[S3Server, S3Settings]
) -> None:
    server, s3 = private_s3
    client = make_s3_client(s3)
    await seed_ticks(pg_settings, 300_000)  # pg_dump takes a while: time to pull the plug
    await seed_training(pg_settings, s3, client)
    service = build_service(backup_settings(pg_settings, s3, keep=1), client=client)
    for _ in range(2):
        await service.run_verify_prune()
    survivors = service.store.backup_ids()
    assert len(survivors) == 1  # keep=1: retention works when backups succeed
    survivor_objects = model_files(client, s3.backups_bucket)

    task = asyncio.create_task(service.run())
    for _ in range(1500):  # until the new backup's first manifest is in S3
        if len(service.store.backup_ids()) >= 2:
            break
        await asyncio.sleep(0.02)
    pid = server.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(BackupFailed) as failed:
        await task
    message = str(failed.value)
    assert "FAILED" in message
    assert "no backup was deleted" in message

    conn = await asyncpg.connect(pg_settings.url)
    try:
        rows = dict(await conn.fetch("SELECT id, status FROM ops.backups ORDER BY id"))
    finally:
        await conn.close()
    failed_id = max(rows)
    assert rows[failed_id] == "failed"

    server.start()  # S3 back: the survivor is untouched, the failed one never counts
    assert {
        k: v
        for k, v in model_files(client, s3.backups_bucket).items()
        if k.startswith(f"backups/{survivors[0]}/")
    } == survivor_objects
    assert await service.reconcile() == [failed_id]
    manifest = service.store.read_manifest(failed_id)
    assert manifest is not None
    assert manifest.status == "failed"
    assert manifest.error
    plan = await service.prune(failed_id)
    assert plan.delete == ()
    assert survivors[0] in service.store.backup_ids()


async def test_a_restore_into_the_live_database_loses_nothing(
    pg_settings: PostgresSettings, s3_settings: S3Settings, kafka_settings: KafkaSettings
) -> None:
    """Backup, a day more stored, restore into the live database, restart the sink: every
    tick is back, none twice, because the positions the sink read up to are restored with
    the rows and it resumes from them. Then retention deletes what it would re-read: the
    restore names the lost offsets and refuses, unless told to accept the loss."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

    from metalcast_core import TICKS
    from metalcast_ingestor import bootstrap as ingestor
    from metalcast_ingestor.config import IngestorSettings
    from metalcast_sink.bootstrap import run_sink
    from tests.support import FAST_GROUP, sink_settings

    ingest = IngestorSettings(postgres=pg_settings, kafka=kafka_settings)
    sink = sink_settings(pg_settings, kafka_settings)  # one group for the whole test
    end = ingestor.current_hour() + timedelta(hours=1)
    middle = end - timedelta(hours=24)
    count = "SELECT count(*) FROM prices.ticks"
    distinct = "SELECT count(DISTINCT (symbol, observed_at, source)) FROM prices.ticks"

    await ingestor.backfill(ingest, "simulated", middle - timedelta(hours=24), middle)
    first = await run_sink(sink, until_idle=True, consumer_options=FAST_GROUP)
    assert first.rows_inserted == 96
    service = build_service(
        BackupSettings(
            postgres=pg_settings,
            s3=s3_settings,
            kafka=kafka_settings,
            backup=BackupSection(pg_bin_dir=Path(postgres_bin_dir())),
        )
    )
    manifest = await service.run()
    assert sum(p.next_offset for p in manifest.positions) == 96

    await ingestor.backfill(ingest, "simulated", middle, end)  # published after the backup
    second = await run_sink(sink, until_idle=True, consumer_options=FAST_GROUP)
    assert second.rows_inserted == 96
    assert await fetchval(pg_settings, count) == 192

    live = PgTarget(pg_settings.url).database
    report = await service.restore(manifest.backup_id, live, force=True)
    assert report.problems == []
    rereads = [
        re.search(r": (\d+) message\(s\) published after", line) for line in report.positions
    ]
    assert all(rereads), report.positions
    assert sum(int(m.group(1)) for m in rereads if m) == 96, report.positions
    assert await fetchval(pg_settings, count) == 96  # the day after the backup is gone ...

    resumed = await run_sink(sink, until_idle=True, consumer_options=FAST_GROUP)
    assert resumed.ticks_received == 96  # ... read again from Kafka, not from the beginning
    assert await fetchval(pg_settings, count) == 192  # ... and back, each tick once
    assert await fetchval(pg_settings, distinct) == 192
    hours = "SELECT count(*) FROM analytics.metal_prices WHERE xau IS NOT NULL AND xpd IS NOT NULL"
    assert await fetchval(pg_settings, hours) == 48
    unpublished = "SELECT count(*) FROM pipeline.batches WHERE published_at IS NULL"
    assert await fetchval(pg_settings, unpublished) == 0

    # Retention deletes every message so far: what the backup's positions need is gone.
    topic = kafka_settings.topic_name(TICKS)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    try:
        deleted = await admin.delete_records(
            {
                TopicPartition(topic, n): RecordsToDelete(before_offset=-1)
                for n in range(kafka_settings.ticks_partitions)
            }
        )
    finally:
        await admin.close()
    assert deleted
    with pytest.raises(RefusedError, match="are gone and cannot be re-read") as refused:
        await service.restore(manifest.backup_id, live, force=True)
    assert "--accept-loss" in str(refused.value)
    assert await fetchval(pg_settings, count) == 192  # refused before touching anything
    report = await service.restore(manifest.backup_id, live, force=True, accept_loss=True)
    assert any("are gone" in line for line in report.positions), report.positions
    assert await fetchval(pg_settings, count) == 96

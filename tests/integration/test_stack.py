"""The local stack: real servers that answer real requests, with the names the services read."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from botocore.exceptions import ClientError
from pydantic import BaseModel, SecretStr

from metalcast import stack as local_stack
from metalcast.stack import StackConfig, StackError, world
from metalcast.stack.postgres import Postgres
from metalcast_backup.config import BackupSettings
from metalcast_core import (
    ALL_TOPICS,
    TICKS,
    KafkaSettings,
    PostgresSettings,
    S3Settings,
    make_consumer,
    make_producer,
    make_s3_client,
)

if TYPE_CHECKING:
    from tests.conftest import Stack

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


@pytest.fixture
def local(stack: Stack) -> Stack:
    if stack.kind != "local":
        pytest.skip("checks the local process stack, not containers")
    return stack


def test_up_again_finds_the_running_servers(local: Stack) -> None:
    before = local_stack.status()
    reports = local_stack.up()

    assert {name: r.started for name, r in reports.items()} == {
        "postgres": False,
        "kafka": False,
        "s3": False,
        "s3-offsite": False,
    }
    after = local_stack.status()
    for name, st in after.items():
        assert st.running, name
        assert st.pid == before[name].pid == reports[name].pid
    assert after["s3"].implementation in {"minio", "seaweedfs"}
    assert after["s3-offsite"].implementation == "minio"


def test_the_offsite_minio_is_a_server_of_its_own(local: Stack) -> None:
    """Another process, folder, port and key pair: the primary's keys open nothing there,
    and its bucket was created with object lock."""
    st = local_stack.status()
    assert st["s3-offsite"].pid != st["s3"].pid
    assert st["s3-offsite"].log.parent != st["s3"].log.parent
    env = local_stack.env()
    offsite = world.offsite_server(env)
    assert offsite is not None
    assert offsite.endpoint_url == f"http://{st['s3-offsite'].address}"
    client = make_s3_client(offsite)
    lock = client.get_object_lock_configuration(Bucket=offsite.backups_bucket)
    assert lock["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    primary_keys = local.s3.model_copy(update={"endpoint_url": offsite.endpoint_url})
    with pytest.raises(ClientError) as refused:
        make_s3_client(primary_keys).head_bucket(Bucket=offsite.backups_bucket)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    offsite_keys = offsite.model_copy(update={"endpoint_url": local.s3.endpoint_url})
    with pytest.raises(ClientError) as refused:
        make_s3_client(offsite_keys).head_bucket(Bucket=local.s3.backups_bucket)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_status_matches_env(local: Stack) -> None:
    st = local_stack.status()
    env = local_stack.env()
    assert env["METALCAST_KAFKA__BOOTSTRAP_SERVERS"] == st["kafka"].address
    assert env["METALCAST_S3__ENDPOINT_URL"] == f"http://{st['s3'].address}"
    assert f"@{st['postgres'].address}/" in env["METALCAST_POSTGRES__URL"]
    for name, server in st.items():
        assert server.rss_kib, name


def test_postgres_bin_dir_has_matching_backup_tools() -> None:
    folder = Path(local_stack.postgres_bin_dir())
    for tool in ("pg_dump", "pg_restore", "psql"):
        assert os.access(folder / tool, os.X_OK), tool


async def test_postgres_is_18_and_the_test_database_is_migrated(
    pg_settings: PostgresSettings,
) -> None:
    conn = await asyncpg.connect(pg_settings.url)
    try:
        version = await conn.fetchval("SELECT version()")
        applied = await conn.fetchval("SELECT count(*) FROM public.schema_migrations")
        database = await conn.fetchval("SELECT current_database()")
    finally:
        await conn.close()
    assert version.startswith("PostgreSQL 18"), version
    assert applied >= 1
    assert database.startswith("test_")


async def test_the_metalcast_database_exists(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.postgres.url)
    try:
        assert await conn.fetchval("SELECT current_database()") == "metalcast"
    finally:
        await conn.close()


async def test_kafka_produces_and_consumes_one_message(kafka_settings: KafkaSettings) -> None:
    topic = kafka_settings.topic_name(TICKS)
    key, value = b"XAUUSD", f"hello {uuid.uuid4()}".encode()
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()

    consumer = make_consumer(
        kafka_settings, [topic], group_id=f"test-{uuid.uuid4().hex[:8]}", **FAST_GROUP
    )
    await consumer.start()
    try:
        record = await consumer.getone()  # bounded by the test timeout
        await consumer.commit()
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (key, value)


async def test_kafka_has_the_registered_topics_and_refuses_auto_creation(
    kafka_settings: KafkaSettings,
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    try:
        topics = set(await admin.list_topics())
    finally:
        await admin.close()
    assert {kafka_settings.topic_name(t) for t in ALL_TOPICS} <= topics
    assert {t.name for t in ALL_TOPICS} <= topics  # created by up() for the services

    producer = make_producer(kafka_settings, request_timeout_ms=3000)
    await producer.start()
    try:
        with pytest.raises(Exception):  # noqa: B017,PT011  (the error type is aiokafka's choice)
            await producer.send_and_wait(f"{kafka_settings.topic_prefix}not-registered", b"x")
    finally:
        await producer.stop()


def test_s3_put_get_and_wrong_secret_is_refused(s3_settings: S3Settings) -> None:
    client = make_s3_client(s3_settings)
    body = uuid.uuid4().bytes
    client.put_object(Bucket=s3_settings.models_bucket, Key="XAUUSD/model.zip", Body=body)
    got = client.get_object(Bucket=s3_settings.models_bucket, Key="XAUUSD/model.zip")
    assert got["Body"].read() == body

    forged = s3_settings.model_copy(update={"secret_access_key": SecretStr("not-the-secret")})
    with pytest.raises(ClientError) as refused:
        make_s3_client(forged).get_object(Bucket=s3_settings.models_bucket, Key="XAUUSD/model.zip")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_the_services_buckets_exist(stack: Stack) -> None:
    client = make_s3_client(stack.s3)
    for bucket in (stack.s3.models_bucket, stack.s3.backups_bucket):
        client.head_bucket(Bucket=bucket)


def test_env_names_are_service_settings_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    env = local_stack.env()
    for name in list(os.environ):
        if name.startswith("METALCAST_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    # Every service's sections, and the backup service's own (its off-box target).
    settings = BackupSettings()

    for name, value in env.items():
        if not name.startswith("METALCAST_"):
            continue
        got: object = settings
        for key in name.removeprefix("METALCAST_").lower().split("__"):
            assert isinstance(got, BaseModel), name
            assert key in type(got).model_fields, name
            got = getattr(got, key)
        got = got.get_secret_value() if isinstance(got, SecretStr) else got
        assert str(got) == value, name


def test_env_follows_port_overrides() -> None:
    config = StackConfig.from_environ(
        {
            "METALCAST_STACK_DIR": "/tmp/elsewhere",
            "METALCAST_STACK_PG_PORT": "15432",
            "METALCAST_STACK_KAFKA_PORT": "19092",
            "METALCAST_STACK_S3_PORT": "19000",
            "METALCAST_STACK_S3_OFFSITE_PORT": "19100",
        }
    )
    env = local_stack.env(config)
    assert env["METALCAST_POSTGRES__URL"] == "postgresql://postgres@127.0.0.1:15432/metalcast"
    assert env["METALCAST_KAFKA__BOOTSTRAP_SERVERS"] == "127.0.0.1:19092"
    assert env["METALCAST_S3__ENDPOINT_URL"] == "http://127.0.0.1:19000"
    assert env["PGPORT"] == "15432"
    assert env["METALCAST_BACKUP__OFFSITE__ENDPOINT_URL"] == "http://127.0.0.1:19100"
    assert config.stack_dir == Path("/tmp/elsewhere")


# --- a second stack, on other ports and in another folder, to test down() and restarts ----------


def _free_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture
def other_config(local: Stack) -> Iterator[StackConfig]:
    # PostgreSQL runs as 'nobody', which must be able to enter the folder (mkdtemp gives 0700).
    folder = Path(tempfile.mkdtemp(prefix="metalcast-stack-"))
    folder.chmod(0o755)
    pg, kafka, controller, s3, console, offsite, offsite_console = _free_ports(7)
    config = dataclasses.replace(
        StackConfig.from_environ(),
        stack_dir=folder / "stack",
        pg_port=pg,
        kafka_port=kafka,
        kafka_controller_port=controller,
        s3_port=s3,
        s3_console_port=console,
        s3_offsite_port=offsite,
        s3_offsite_console_port=offsite_console,
    )
    try:
        yield config
    finally:
        local_stack.down(config, purge=True)
        shutil.rmtree(folder, ignore_errors=True)


def _runs(pid: int) -> bool:
    """Alive and not a zombie (servers this process spawned linger as zombies until reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in {"Z", "X"}


@pytest.mark.timeout(300)
async def test_a_second_stack_stops_restarts_with_its_data_and_purges(
    other_config: StackConfig,
) -> None:
    env = local_stack.env(other_config)
    reports = local_stack.up(other_config)
    assert all(r.started for r in reports.values())
    pg = PostgresSettings(url=env["METALCAST_POSTGRES__URL"])
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
    finally:
        await conn.close()
    s3 = S3Settings(
        endpoint_url=env["METALCAST_S3__ENDPOINT_URL"],
        models_bucket=env["METALCAST_S3__MODELS_BUCKET"],
    )
    make_s3_client(s3).put_object(Bucket=s3.models_bucket, Key="kept", Body=b"42")

    pids = [r.pid for r in reports.values()]
    local_stack.down(other_config)
    assert not any(st.running for st in local_stack.status(other_config).values())
    assert not [pid for pid in pids if _runs(pid)]
    assert not list(other_config.stack_dir.glob("*/pid"))
    assert local_stack.status()["kafka"].running  # the session's stack is untouched

    again = local_stack.up(other_config)
    assert all(r.started for r in again.values())
    conn = await asyncpg.connect(pg.url)
    try:
        assert await conn.fetchval("SELECT x FROM kept") == 42
    finally:
        await conn.close()
    got = make_s3_client(s3).get_object(Bucket=s3.models_bucket, Key="kept")
    assert got["Body"].read() == b"42"
    admin = AIOKafkaAdminClient(bootstrap_servers=env["METALCAST_KAFKA__BOOTSTRAP_SERVERS"])
    await admin.start()
    try:
        assert TICKS.name in await admin.list_topics()
    finally:
        await admin.close()

    local_stack.down(other_config, purge=True)
    assert not other_config.stack_dir.exists()


@pytest.mark.timeout(400)
def test_up_after_down_purge_again_and_again(other_config: StackConfig) -> None:
    """A fresh stack every time (new data folders, new Kafka cluster ids): it always comes
    up. (A cluster id starting with '-' once failed about one start in 64.)"""
    cluster_ids = set()
    for _ in range(3):
        reports = local_stack.up(other_config)
        assert all(r.started for r in reports.values()), reports
        meta = other_config.server("kafka").data / "meta.properties"
        cluster_ids |= {
            line.split("=", 1)[1]
            for line in meta.read_text().splitlines()
            if line.startswith("cluster.id=")
        }
        local_stack.down(other_config, purge=True)
        assert not other_config.stack_dir.exists()
    assert len(cluster_ids) == 3


def test_a_server_that_cannot_start_fails_with_its_log(other_config: StackConfig) -> None:
    # Bound but not listening: no holder to name, so PostgreSQL starts and fails to bind.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", other_config.pg_port))
        with pytest.raises(StackError) as failed:
            Postgres(other_config).start()
    message = str(failed.value)
    assert "last lines of" in message
    assert "could not" in message  # PostgreSQL's own words, from its log


@pytest.mark.timeout(300)
def test_a_failed_up_stops_the_servers_it_started(other_config: StackConfig) -> None:
    """PostgreSQL cannot bind its port: Kafka and both S3s, started by the same call, are stopped
    again rather than left running as orphans."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", other_config.pg_port))
        taken.listen()
        with pytest.raises(StackError) as failed:
            local_stack.up(other_config)
    assert sorted(failed.value.started) == ["kafka", "s3", "s3-offsite"]
    assert "postgres" in str(failed.value)
    assert not any(st.running for st in local_stack.status(other_config).values())
    assert not list(other_config.stack_dir.glob("*/pid"))
    assert local_stack.status()["kafka"].running  # the session's stack is untouched


def test_a_port_held_by_another_process_is_refused_naming_it(other_config: StackConfig) -> None:
    """Not this stack's PostgreSQL on the port: refused before anything starts, with the
    holder's pid and command (here this test process)."""
    import os

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", other_config.pg_port))
        taken.listen()
        with pytest.raises(StackError) as refused:
            Postgres(other_config).start()
    message = str(refused.value)
    assert f"port {other_config.pg_port} for postgresql is held by pid {os.getpid()}" in message
    assert "python" in message
    assert not (other_config.stack_dir / "postgres" / "data").exists()  # nothing started

"""An isolated world on a running stack: a database, a topic prefix and buckets of its own.

The tests (per test, and once per session for the API's end-to-end world) and the benchmarks
all build the same thing, so it lives here once::

    async with isolated_world(label="bench") as world:
        env = world.env()          # METALCAST_... variables for a service started as a process
        settings = SinkSettings(postgres=world.postgres, kafka=world.kafka)

The pieces are also usable on their own (``create_database``/``drop_database``,
``create_topics``/``delete_topics``, ``create_buckets``/``delete_buckets``), as the per-test
fixtures do. A database is cloned from a migrated template (``migrated_template``) unless asked
for empty; nothing here touches the stack's own database, topics or buckets.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient
from botocore.exceptions import ClientError

from metalcast.stack._paths import repo_root
from metalcast.stack.kafka import wait_for_topics
from metalcast_core import (
    ALL_TOPICS,
    KafkaSettings,
    PostgresSettings,
    S3Settings,
    ensure_buckets,
    ensure_topics,
    make_s3_client,
    migrate,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

__all__ = [
    "TEMPLATE_DB",
    "World",
    "create_buckets",
    "create_database",
    "create_topics",
    "delete_buckets",
    "delete_locked_bucket",
    "delete_topics",
    "drop_database",
    "isolated_world",
    "migrated_template",
    "migrations_dir",
    "offsite_bucket",
    "offsite_server",
    "stack_settings",
]

TEMPLATE_DB = "metalcast_template"
Schema = Literal["template", "migrated", "empty"]


def migrations_dir() -> Path:
    return repo_root() / "infra" / "migrations"


@dataclass(frozen=True)
class World:
    """Settings sections pointing at this world's own database, topics and buckets."""

    postgres: PostgresSettings
    kafka: KafkaSettings
    s3: S3Settings
    base_env: Mapping[str, str]
    # The off-box backup target, where the stack has one (``backups_bucket``: this world's).
    offsite: S3Settings | None = None

    @property
    def database(self) -> str:
        return self.postgres.url.rpartition("/")[2]

    def env(self) -> dict[str, str]:
        """The stack's ``METALCAST_...`` variables, redirected to this world (for processes)."""
        return {
            **self.base_env,
            "METALCAST_POSTGRES__URL": self.postgres.url,
            "METALCAST_KAFKA__BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "METALCAST_KAFKA__TOPIC_PREFIX": self.kafka.topic_prefix,
            "METALCAST_S3__MODELS_BUCKET": self.s3.models_bucket,
            "METALCAST_S3__BACKUPS_BUCKET": self.s3.backups_bucket,
            **(
                {"METALCAST_BACKUP__OFFSITE__BUCKET": self.offsite.backups_bucket}
                if self.offsite is not None
                else {}
            ),
            "PGDATABASE": self.database,
        }


def stack_settings(
    env: Mapping[str, str] | None = None,
) -> tuple[PostgresSettings, KafkaSettings, S3Settings, dict[str, str]]:
    """The stack's own server settings, from ``env`` (default: this checkout's local stack)."""
    if env is None:
        from metalcast import stack  # the package imports this module's siblings only

        env = stack.env()
    variables = dict(env)
    postgres = PostgresSettings(url=variables["METALCAST_POSTGRES__URL"])
    kafka = KafkaSettings(bootstrap_servers=variables["METALCAST_KAFKA__BOOTSTRAP_SERVERS"])
    s3 = S3Settings.model_validate(
        {
            "endpoint_url": variables["METALCAST_S3__ENDPOINT_URL"],
            "access_key_id": variables["METALCAST_S3__ACCESS_KEY_ID"],
            "secret_access_key": variables["METALCAST_S3__SECRET_ACCESS_KEY"],
            "region": variables.get("METALCAST_S3__REGION", "us-east-1"),
        }
    )
    return postgres, kafka, s3, variables


# --- PostgreSQL -------------------------------------------------------------------------------


async def _admin_execute(server: PostgresSettings, sql: str) -> None:
    conn = await asyncpg.connect(server.with_database("postgres").url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _database_exists(server: PostgresSettings, name: str) -> bool:
    conn = await asyncpg.connect(server.with_database("postgres").url)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def migrated_template(
    server: PostgresSettings, name: str = TEMPLATE_DB, migrations: Path | None = None
) -> str:
    """``name``, created and migrated if needed. A template whose applied migrations were since
    edited (normal while writing one) is dropped and rebuilt. Returns its name."""
    folder = migrations if migrations is not None else migrations_dir()
    template = server.with_database(name)
    for attempt in range(2):
        if not await _database_exists(server, name):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # another session's
                await _admin_execute(server, f'CREATE DATABASE "{name}"')
        try:
            await migrate(template, folder)
            return name
        except RuntimeError as exc:
            if "changed after it was applied" not in str(exc) or attempt:
                raise
            await _admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    raise AssertionError("unreachable")


async def create_database(
    server: PostgresSettings,
    name: str,
    *,
    schema: Schema = "template",
    template: str | None = None,
) -> PostgresSettings:
    """A new database ``name`` on ``server``: cloned from the migrated template (fast, the
    default; ``template`` names one already migrated), migrated from scratch (``"migrated"``),
    or ``"empty"``."""
    if schema == "template":
        template = template if template is not None else await migrated_template(server)
        for attempt in range(20):
            try:
                await _admin_execute(server, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                break
            except asyncpg.ObjectInUseError:
                # Another session is migrating the template right now.
                if attempt == 19:
                    raise
                await asyncio.sleep(0.25)
    else:
        await _admin_execute(server, f'CREATE DATABASE "{name}"')
    settings = server.with_database(name)
    if schema == "migrated":
        await migrate(settings, migrations_dir())
    return settings


async def drop_database(server: PostgresSettings, name: str) -> None:
    await _admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- Kafka ------------------------------------------------------------------------------------


async def create_topics(server: KafkaSettings, prefix: str) -> KafkaSettings:
    """Every registered topic under ``prefix``, created and led before this returns."""
    settings = server.model_copy(
        update={"topic_prefix": prefix, "client_id": f"world-{prefix.rstrip('.')}"}
    )
    await ensure_topics(settings)
    await wait_for_topics(settings, {settings.topic_name(t) for t in ALL_TOPICS})
    return settings


async def delete_topics(settings: KafkaSettings) -> None:
    """Best effort (keeps the broker small); a failure here never fails the caller."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    with contextlib.suppress(Exception):
        await admin.start()
        try:
            await admin.delete_topics(sorted(settings.topic_name(t) for t in ALL_TOPICS))
        finally:
            await admin.close()


# --- S3 ---------------------------------------------------------------------------------------


def create_buckets(server: S3Settings, prefix: str) -> S3Settings:
    """``{prefix}-models`` and ``{prefix}-backups``, created."""
    settings = server.model_copy(
        update={"models_bucket": f"{prefix}-models", "backups_bucket": f"{prefix}-backups"}
    )
    ensure_buckets(make_s3_client(settings), settings)
    return settings


def delete_buckets(settings: S3Settings) -> None:
    """Both buckets emptied (every version and delete marker) and deleted."""
    client = make_s3_client(settings)
    for bucket in (settings.models_bucket, settings.backups_bucket):
        paginator = client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=bucket):
            objects: list[ObjectIdentifierTypeDef] = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            ]
            if objects:
                client.delete_objects(Bucket=bucket, Delete={"Objects": objects})
        client.delete_bucket(Bucket=bucket)


def offsite_server(env: Mapping[str, str]) -> S3Settings | None:
    """The stack's off-box S3 (``METALCAST_BACKUP__OFFSITE__*``), or None without one."""
    if "METALCAST_BACKUP__OFFSITE__ENDPOINT_URL" not in env:
        return None
    return S3Settings.model_validate(
        {
            "endpoint_url": env["METALCAST_BACKUP__OFFSITE__ENDPOINT_URL"],
            "access_key_id": env["METALCAST_BACKUP__OFFSITE__ACCESS_KEY_ID"],
            "secret_access_key": env["METALCAST_BACKUP__OFFSITE__SECRET_ACCESS_KEY"],
            "region": env.get("METALCAST_BACKUP__OFFSITE__REGION", "us-east-1"),
            "backups_bucket": env.get("METALCAST_BACKUP__OFFSITE__BUCKET", "unset"),
        }
    )


def offsite_bucket(server: S3Settings, prefix: str) -> S3Settings:
    """A bucket name of its own on the off-box S3 (``{prefix}-offsite``), not created: the
    backup service creates it, with object lock, on its first backup."""
    return server.model_copy(update={"backups_bucket": f"{prefix}-offsite"})


def delete_locked_bucket(settings: S3Settings) -> None:
    """The off-box bucket, if it exists, emptied of every version and delete marker (bypassing
    governance retention, which its owner may) and deleted."""
    client = make_s3_client(settings)
    bucket = settings.backups_bucket
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError:
        return
    paginator = client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket):
        objects: list[ObjectIdentifierTypeDef] = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        if objects:
            client.delete_objects(
                Bucket=bucket, Delete={"Objects": objects}, BypassGovernanceRetention=True
            )
    client.delete_bucket(Bucket=bucket)


# --- all three --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def isolated_world(
    env: Mapping[str, str] | None = None, *, label: str = "world", schema: Schema = "template"
) -> AsyncIterator[World]:
    """A database ``{label}_{id}``, topics under ``{label}{id}.`` and buckets
        ``{label}-{id}-models|backups`` (and ``-offsite`` on the off-box S3, where the stack has
    one) on the stack ``env`` describes; all removed on exit."""
    server_pg, server_kafka, server_s3, variables = stack_settings(env)
    tag = uuid.uuid4().hex[:8]
    name = f"{label}_{tag}"
    postgres = await create_database(server_pg, name, schema=schema)
    try:
        kafka = await create_topics(server_kafka, f"{label}{tag}.")
        try:
            s3_tag = f"{label}-{tag}".lower().replace("_", "-")
            s3 = await asyncio.to_thread(create_buckets, server_s3, s3_tag)
            server_offsite = offsite_server(variables)
            offsite = None if server_offsite is None else offsite_bucket(server_offsite, s3_tag)
            try:
                yield World(
                    postgres=postgres, kafka=kafka, s3=s3, base_env=variables, offsite=offsite
                )
            finally:
                await asyncio.to_thread(delete_buckets, s3)
                if offsite is not None:
                    await asyncio.to_thread(delete_locked_bucket, offsite)
        finally:
            await delete_topics(kafka)
    finally:
        await drop_database(server_pg, name)

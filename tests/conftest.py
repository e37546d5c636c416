"""Fixtures for the test tiers.

Tests under ``tests/integration`` and ``tests/e2e`` get the ``integration``/``e2e`` marker and
the session-wide ``stack``: the local stack of real servers (:mod:`metalcast.stack`), reused if
it already runs and stopped at the end only if this session started it (unless
``METALCAST_KEEP_STACK=1``). With ``METALCAST_TEST_STACK=testcontainers`` and a Docker engine,
the same servers run in containers instead. Unit tests never start anything.

Isolation per test: ``pg_settings`` (a fresh database cloned from a migrated template),
``kafka_settings`` (a unique topic prefix, topics created) and ``s3_settings`` (unique buckets),
built by :mod:`metalcast.stack.world`, which the benchmarks use too.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr

from metalcast import stack as local_stack
from metalcast.stack import world
from metalcast_core import KafkaSettings, PostgresSettings, S3Settings

REPO = Path(__file__).resolve().parents[1]
MIGRATIONS = REPO / "infra" / "migrations"
TEMPLATE_DB = world.TEMPLATE_DB
TIERS = ("integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(REPO).parts
        if len(parts) > 1 and parts[0] == "tests" and parts[1] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[1]))


@dataclass
class Stack:
    """The running stack as the tests see it: its environment and a settings section each."""

    env: dict[str, str]
    kind: str  # "local" or "testcontainers"
    started: list[str] = field(default_factory=list)  # servers this session started

    @property
    def postgres(self) -> PostgresSettings:
        return PostgresSettings(url=self.env["METALCAST_POSTGRES__URL"])

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.env["METALCAST_KAFKA__BOOTSTRAP_SERVERS"])

    @property
    def s3(self) -> S3Settings:
        return S3Settings(
            endpoint_url=self.env["METALCAST_S3__ENDPOINT_URL"],
            access_key_id=SecretStr(self.env["METALCAST_S3__ACCESS_KEY_ID"]),
            secret_access_key=SecretStr(self.env["METALCAST_S3__SECRET_ACCESS_KEY"]),
            region=self.env["METALCAST_S3__REGION"],
            models_bucket=self.env["METALCAST_S3__MODELS_BUCKET"],
            backups_bucket=self.env["METALCAST_S3__BACKUPS_BUCKET"],
        )


def _use_testcontainers() -> bool:
    if os.environ.get("METALCAST_TEST_STACK") != "testcontainers":
        return False
    from tests.container_stack import docker_available

    if not docker_available():
        pytest.fail("METALCAST_TEST_STACK=testcontainers but `docker info` fails: no Docker engine")
    return True


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The servers, started once per session (or found running)."""
    if _use_testcontainers():
        from tests.container_stack import ContainerStack

        containers = ContainerStack()
        env = containers.start()
        try:
            yield Stack(env=env, kind="testcontainers", started=list(local_stack.SERVER_NAMES))
        finally:
            containers.stop()
        return

    reports = local_stack.up()
    started = [name for name, report in reports.items() if report.started]
    try:
        yield Stack(env=local_stack.env(), kind="local", started=started)
    finally:
        if started and os.environ.get("METALCAST_KEEP_STACK") != "1":
            local_stack.down(only=started)


@pytest.fixture(autouse=True)
def _stack_for_tiers(request: pytest.FixtureRequest) -> None:
    """Integration and e2e tests get the stack even when they do not ask for it by name."""
    if any(request.node.get_closest_marker(tier) for tier in TIERS):
        request.getfixturevalue("stack")


# --- PostgreSQL: a fresh database per test, cloned from a migrated template ---------------------


@pytest.fixture(scope="session")
async def pg_template(stack: Stack) -> str:
    """``metalcast_template``, migrated once per session (rebuilt if a migration changed)."""
    return await world.migrated_template(stack.postgres, TEMPLATE_DB, MIGRATIONS)


@pytest.fixture
async def pg_settings(stack: Stack, pg_template: str) -> AsyncIterator[PostgresSettings]:
    """A database of its own, with every migration applied; dropped after the test."""
    name = f"test_{uuid.uuid4().hex}"
    settings = await world.create_database(stack.postgres, name, template=pg_template)
    try:
        yield settings
    finally:
        await world.drop_database(stack.postgres, name)


# --- Kafka: a unique topic prefix per test --------------------------------------------------------


@pytest.fixture
async def kafka_settings(stack: Stack) -> AsyncIterator[KafkaSettings]:
    """Every registered topic under a prefix of its own (``t1a2b3c4d.``); deleted after."""
    settings = await world.create_topics(stack.kafka, f"t{uuid.uuid4().hex[:8]}.")
    try:
        yield settings
    finally:
        await world.delete_topics(settings)


# --- S3: unique buckets per test ------------------------------------------------------------------


@pytest.fixture
def offsite_s3(stack: Stack, s3_settings: S3Settings) -> Iterator[S3Settings]:
    """The off-box S3 (the stack's second MinIO) with a backups bucket name of this test's
    (``backups_bucket``; created by the first backup, with object lock); deleted after,
    every locked version too."""
    server = world.offsite_server(stack.env)
    if server is None:
        pytest.skip("this stack has no off-box S3 (METALCAST_STACK_S3=seaweedfs, or containers)")
    settings = world.offsite_bucket(server, s3_settings.backups_bucket.removesuffix("-backups"))
    try:
        yield settings
    finally:
        world.delete_locked_bucket(settings)


@pytest.fixture
def s3_settings(stack: Stack) -> Iterator[S3Settings]:
    """Models and backups buckets of its own; emptied and deleted after the test."""
    settings = world.create_buckets(stack.s3, f"test-{uuid.uuid4().hex[:8]}")
    try:
        yield settings
    finally:
        world.delete_buckets(settings)

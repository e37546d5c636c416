"""The same stack in Docker containers (testcontainers), for machines with a Docker engine.

The images are the ones compose.yaml runs: ``postgres:18``, ``apache/kafka:4.1.1`` and
``quay.io/minio/minio`` (same tag; twice, the second the backups' off-box target). The test
suite uses them when ``METALCAST_TEST_STACK=testcontainers`` and ``docker info`` succeeds.
``testcontainers`` is a development dependency: imported lazily. Test-only code: it lives
under ``tests/``, never in a shipped package.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from metalcast.stack import offsite, world
from metalcast.stack._env import stack_env
from metalcast.stack._process import StackError, run_async
from metalcast.stack.kafka import answers_metadata
from metalcast.stack.minio import ACCESS_KEY, SECRET_KEY, http_ok
from metalcast.stack.postgres import DATABASE, USER, bin_dir
from metalcast_core import (
    KafkaSettings,
    S3Settings,
    ensure_buckets,
    ensure_topics,
    make_s3_client,
)

POSTGRES_IMAGE = "postgres:18"
KAFKA_IMAGE = "apache/kafka:4.1.1"
MINIO_IMAGE = "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"


def docker_available() -> bool:
    """Whether a Docker engine answers (``docker info``)."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run([docker, "info"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(check: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {timeout_s:.0f} s")
        time.sleep(0.5)


class ContainerStack:
    """PostgreSQL, Kafka and MinIO containers; :meth:`env` has the same names as the local
    stack's :func:`metalcast.stack.env`."""

    def __init__(self) -> None:
        self._containers: list[Any] = []
        self._env: dict[str, str] | None = None

    def start(self) -> dict[str, str]:
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.wait_strategies import HttpWaitStrategy, PortWaitStrategy

        try:
            postgres = (
                DockerContainer(POSTGRES_IMAGE)
                .with_env("POSTGRES_USER", USER)
                .with_env("POSTGRES_DB", DATABASE)
                .with_env("POSTGRES_HOST_AUTH_METHOD", "trust")
                .with_exposed_ports(5432)
                .waiting_for(PortWaitStrategy(5432))
            )
            self._containers.append(postgres.start())
            host = postgres.get_container_host_ip()
            pg_port = int(postgres.get_exposed_port(5432))

            # Kafka advertises the address clients must use, so its host port is fixed up front.
            kafka_port = _free_port()
            kafka = (
                DockerContainer(KAFKA_IMAGE)
                .with_envs(
                    KAFKA_NODE_ID="1",
                    KAFKA_PROCESS_ROLES="broker,controller",
                    KAFKA_LISTENERS="PLAINTEXT://:9092,CONTROLLER://:9093",
                    KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://{host}:{kafka_port}",
                    KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
                    KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
                    KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
                    KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
                    KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
                    KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
                    KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
                    KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
                    KAFKA_NUM_PARTITIONS="3",
                    KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
                )
                .with_bind_ports(9092, kafka_port)
            )
            self._containers.append(kafka.start())

            minio = (
                DockerContainer(MINIO_IMAGE)
                .with_env("MINIO_ROOT_USER", ACCESS_KEY)
                .with_env("MINIO_ROOT_PASSWORD", SECRET_KEY)
                .with_command("server /data --address :9000 --console-address :9001")
                .with_exposed_ports(9000)
                .waiting_for(HttpWaitStrategy(9000, "/minio/health/ready"))
            )
            self._containers.append(minio.start())
            s3_port = int(minio.get_exposed_port(9000))
            # The backups' off-box target: a second MinIO with its own keys (as compose's).
            remote = (
                DockerContainer(MINIO_IMAGE)
                .with_env("MINIO_ROOT_USER", offsite.ACCESS_KEY)
                .with_env("MINIO_ROOT_PASSWORD", offsite.SECRET_KEY)
                .with_command("server /data --address :9000 --console-address :9001")
                .with_exposed_ports(9000)
                .waiting_for(HttpWaitStrategy(9000, "/minio/health/ready"))
            )
            self._containers.append(remote.start())
            offsite_port = int(remote.get_exposed_port(9000))

            env = stack_env(
                pg_host=host,
                pg_port=pg_port,
                kafka_bootstrap=f"{host}:{kafka_port}",
                s3_endpoint=f"http://{host}:{s3_port}",
                offsite_endpoint=f"http://{host}:{offsite_port}",
            )
            self._setup(env)
        except Exception:
            self.stop()
            raise
        self._env = env
        return env

    def _setup(self, env: dict[str, str]) -> None:
        pg_ready = [
            str(bin_dir() / "pg_isready"),
            "-q",
            "-h",
            env["PGHOST"],
            "-p",
            env["PGPORT"],
            "-U",
            USER,
            "-d",
            DATABASE,
        ]
        _wait(
            lambda: subprocess.run(pg_ready, check=False).returncode == 0,
            "PostgreSQL container",
        )
        kafka = KafkaSettings(bootstrap_servers=env["METALCAST_KAFKA__BOOTSTRAP_SERVERS"])
        _wait(lambda: run_async(answers_metadata(kafka, 5.0)), "Kafka container")
        run_async(ensure_topics(kafka))
        _wait(
            lambda: http_ok(f"{env['METALCAST_S3__ENDPOINT_URL']}/minio/health/ready"),
            "MinIO container",
        )
        s3 = S3Settings(
            endpoint_url=env["METALCAST_S3__ENDPOINT_URL"],
            access_key_id=SecretStr(env["METALCAST_S3__ACCESS_KEY_ID"]),
            secret_access_key=SecretStr(env["METALCAST_S3__SECRET_ACCESS_KEY"]),
            region=env["METALCAST_S3__REGION"],
            models_bucket=env["METALCAST_S3__MODELS_BUCKET"],
            backups_bucket=env["METALCAST_S3__BACKUPS_BUCKET"],
        )
        ensure_buckets(make_s3_client(s3), s3)
        remote = world.offsite_server(env)
        assert remote is not None
        _wait(lambda: http_ok(f"{remote.endpoint_url}/minio/health/ready"), "off-box MinIO")
        offsite.create_locked_bucket(remote, remote.backups_bucket)

    def env(self) -> dict[str, str]:
        if self._env is None:
            raise StackError("the container stack is not started")
        return dict(self._env)

    def stop(self) -> None:
        for container in reversed(self._containers):
            container.stop()
        self._containers.clear()
        self._env = None

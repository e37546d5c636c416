"""Where the local stack keeps its state and its downloads, and which ports it uses.

State (data, log, pid per server) lives under ``.stack/`` at the repository root, or
``$METALCAST_STACK_DIR``. Downloads and builds are cached under ``~/.cache/metalcast/``, or
``$METALCAST_CACHE_DIR``, so a second stack on the same machine starts without fetching.
Ports come from ``$METALCAST_STACK_*_PORT`` so two stacks can run side by side.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

S3Implementation = Literal["auto", "minio", "seaweedfs"]


def repo_root() -> Path:
    """The repository this package was installed from (editable install), else the cwd."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "infra" / "kafka" / "pom.xml").is_file():
            return parent
    return Path.cwd()


@dataclass(frozen=True)
class ServerPaths:
    """One server's state: ``root/data``, ``root/log``, ``root/pid``."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def pid(self) -> Path:
        return self.root / "pid"


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    port = int(raw)
    if not 0 < port < 65536:
        raise ValueError(f"{name}={raw} is not a TCP port")
    return port


@dataclass(frozen=True)
class StackConfig:
    """Folders and ports of one local stack. Build it with :meth:`from_environ`."""

    stack_dir: Path
    cache_dir: Path
    # Below Linux's ephemeral range (32768-60999): a client retrying a stopped server there
    # can connect to itself on that port and keep the server from binding when it restarts.
    pg_port: int = 25432
    kafka_port: int = 29092
    kafka_controller_port: int = 29093
    s3_port: int = 29000
    s3_console_port: int = 29001
    # The second MinIO: the off-box backup target (its own data folder and credentials).
    s3_offsite_port: int = 29100
    s3_offsite_console_port: int = 29101
    airflow_port: int = 28080
    # Spark standalone (metalcast stack up --with-spark): master, master UI, worker, worker UI.
    spark_master_port: int = 27077
    spark_master_ui_port: int = 27080
    spark_worker_port: int = 27078
    spark_worker_ui_port: int = 27081
    host: str = "127.0.0.1"
    # "auto": MinIO, built if missing; SeaweedFS if that build fails.
    s3_implementation: S3Implementation = "auto"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> StackConfig:
        """Read ``METALCAST_STACK_DIR``, ``METALCAST_CACHE_DIR``, ``METALCAST_STACK_*_PORT``
        (``..._AIRFLOW_PORT``, ``..._S3_OFFSITE_PORT``, ``..._S3_OFFSITE_CONSOLE_PORT`` and
        ``..._SPARK_*_PORT`` too)
        and ``METALCAST_STACK_S3`` (auto, minio or seaweedfs)."""
        env = os.environ if environ is None else environ
        s3 = env.get("METALCAST_STACK_S3") or "auto"
        if s3 not in ("auto", "minio", "seaweedfs"):
            raise ValueError(f"METALCAST_STACK_S3={s3!r}: expected auto, minio or seaweedfs")
        stack_dir = Path(env.get("METALCAST_STACK_DIR") or repo_root() / ".stack")
        cache_home = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        cache_dir = Path(env.get("METALCAST_CACHE_DIR") or cache_home / "metalcast")
        return cls(
            stack_dir=stack_dir.absolute(),
            cache_dir=cache_dir.absolute(),
            pg_port=_port(env, "METALCAST_STACK_PG_PORT", 25432),
            kafka_port=_port(env, "METALCAST_STACK_KAFKA_PORT", 29092),
            kafka_controller_port=_port(env, "METALCAST_STACK_KAFKA_CONTROLLER_PORT", 29093),
            s3_port=_port(env, "METALCAST_STACK_S3_PORT", 29000),
            s3_console_port=_port(env, "METALCAST_STACK_S3_CONSOLE_PORT", 29001),
            s3_offsite_port=_port(env, "METALCAST_STACK_S3_OFFSITE_PORT", 29100),
            s3_offsite_console_port=_port(env, "METALCAST_STACK_S3_OFFSITE_CONSOLE_PORT", 29101),
            airflow_port=_port(env, "METALCAST_STACK_AIRFLOW_PORT", 28080),
            spark_master_port=_port(env, "METALCAST_STACK_SPARK_MASTER_PORT", 27077),
            spark_master_ui_port=_port(env, "METALCAST_STACK_SPARK_MASTER_UI_PORT", 27080),
            spark_worker_port=_port(env, "METALCAST_STACK_SPARK_WORKER_PORT", 27078),
            spark_worker_ui_port=_port(env, "METALCAST_STACK_SPARK_WORKER_UI_PORT", 27081),
            s3_implementation=s3,  # type: ignore[arg-type]
        )

    def server(self, name: str) -> ServerPaths:
        return ServerPaths(self.stack_dir / name)

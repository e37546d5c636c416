"""Apache Spark standalone for the local stack: one master and one worker (2 cores), from the
jars of the ``pyspark`` wheel (no download), started only when asked
(``metalcast stack up --with-spark``) for ``metalcast bulk ... --engine spark
--spark-master spark://127.0.0.1:<port>``.

Both run as ``java -cp <pyspark>/jars/* org.apache.spark.deploy.{master.Master,worker.Worker}``
(:mod:`metalcast_bulk.spark_cluster`, as compose's spark-master and spark-worker) bound to
127.0.0.1; the marker in their command line is ``-Dmetalcast.stack=<state dir>``.
Ready: the master's JSON status says ALIVE; the worker, when the master lists it ALIVE.
Ports: ``METALCAST_STACK_SPARK_MASTER_PORT`` (27077), ``..._SPARK_MASTER_UI_PORT`` (27080),
``..._SPARK_WORKER_PORT`` (27078), ``..._SPARK_WORKER_UI_PORT`` (27081).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from metalcast.stack._paths import StackConfig
from metalcast.stack._process import StackError, spawn, write_pid
from metalcast.stack._server import Server, ServerStatus, StartReport

WORKER_CORES = 2
WORKER_MEMORY = "2g"


def pyspark_home() -> Path:
    from metalcast_bulk import spark_cluster

    try:
        return spark_cluster.pyspark_home()
    except RuntimeError as exc:
        raise StackError(f"{exc} (scripts/setup.sh installs it)") from exc


def master_url(config: StackConfig) -> str:
    return f"spark://{config.host}:{config.spark_master_port}"


def master_state(config: StackConfig) -> dict[str, Any] | None:
    url = f"http://{config.host}:{config.spark_master_ui_port}/json/"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except (urllib.error.URLError, OSError, ValueError):
        return None


class SparkServer(Server):
    main_class: str
    stop_timeout_s = 20.0
    ready_timeout_s = 90.0

    @property
    def implementation(self) -> str:  # type: ignore[override]
        from pyspark import __version__

        return f"spark-{self.name.removeprefix('spark-')}-{__version__}"

    @property
    def state_name(self) -> str:
        return f"spark/{self.name.removeprefix('spark-')}"

    @property
    def marker(self) -> str:
        return f"-Dmetalcast.stack={self.paths.root}"

    def install(self) -> None:
        if shutil.which("java") is None:
            raise StackError("Spark needs Java 17 on PATH (scripts/setup.sh installs it)")
        pyspark_home()

    def arguments(self) -> list[str]:
        raise NotImplementedError

    def launch(self) -> None:
        from metalcast_bulk import spark_cluster

        self.paths.data.mkdir(parents=True, exist_ok=True)
        env = spark_cluster.java_env(os.environ, self.config.host)
        env["SPARK_LOG_DIR"] = str(self.paths.root)
        command = spark_cluster.java_command(self.main_class, self.arguments(), marker=self.marker)
        proc = spawn(command, self.paths.log, env=env, cwd=self.paths.root)
        write_pid(self.paths.pid, proc.pid)

    def setup(self) -> None:
        return None


class SparkMaster(SparkServer):
    name = "spark-master"
    main_class = "org.apache.spark.deploy.master.Master"  # spark_cluster.MASTER_CLASS

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.config.spark_master_port}"

    def ports(self) -> list[int]:
        return [self.config.spark_master_port, self.config.spark_master_ui_port]

    def arguments(self) -> list[str]:
        c = self.config
        return [
            "--host",
            c.host,
            "--port",
            str(c.spark_master_port),
            "--webui-port",
            str(c.spark_master_ui_port),
        ]

    def ready(self) -> bool:
        state = master_state(self.config)
        return state is not None and state.get("status") == "ALIVE"


class SparkWorker(SparkServer):
    name = "spark-worker"
    main_class = "org.apache.spark.deploy.worker.Worker"  # spark_cluster.WORKER_CLASS

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.config.spark_worker_port}"

    def ports(self) -> list[int]:
        return [self.config.spark_worker_port, self.config.spark_worker_ui_port]

    def arguments(self) -> list[str]:
        c = self.config
        return [
            master_url(c),
            "--host",
            c.host,
            "--port",
            str(c.spark_worker_port),
            "--webui-port",
            str(c.spark_worker_ui_port),
            "--cores",
            str(WORKER_CORES),
            "--memory",
            WORKER_MEMORY,
            "--work-dir",
            str(self.paths.data),
        ]

    def ready(self) -> bool:
        state = master_state(self.config)
        if state is None:
            return False
        return any(
            w.get("state") == "ALIVE"
            and str(w.get("host")) == self.config.host
            and int(w.get("port", 0)) == self.config.spark_worker_port
            for w in state.get("workers", [])
        )


def servers(config: StackConfig) -> list[SparkServer]:
    return [SparkMaster(config), SparkWorker(config)]


def start(config: StackConfig) -> dict[str, StartReport]:
    """The master, then the worker (it registers with the master)."""
    return {server.name: server.start() for server in servers(config)}


def stop(config: StackConfig) -> None:
    for server in reversed(servers(config)):
        server.stop()


def statuses(config: StackConfig) -> dict[str, ServerStatus]:
    """The servers that were ever started on this stack (their folder exists)."""
    return {s.name: s.status() for s in servers(config) if s.paths.root.is_dir()}


__all__ = ["SparkMaster", "SparkWorker", "master_state", "master_url", "start", "statuses", "stop"]

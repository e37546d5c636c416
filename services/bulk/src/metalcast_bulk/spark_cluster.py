"""A Spark standalone master or worker from the jars of the installed ``pyspark`` wheel, so
the cluster runs exactly the Spark version the engine's driver speaks. Used by
``metalcast-bulk spark-master|spark-worker`` (compose.yaml's spark-master and spark-worker)
and by the local stack (``metalcast stack up --with-spark``)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def pyspark_home() -> Path:
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise RuntimeError("the Spark cluster needs the pyspark package")
    return Path(spec.origin).parent


def java_command(
    main_class: str, arguments: list[str], *, heap: str = "512m", marker: str = ""
) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("the Spark cluster needs Java 17 on PATH")
    jvm = [f"-Xmx{heap}", *([marker] if marker else [])]
    return [java, *jvm, "-cp", f"{pyspark_home() / 'jars'}/*", main_class, *arguments]


def java_env(base: Mapping[str, str], host: str) -> dict[str, str]:
    return {
        **base,
        "SPARK_HOME": str(pyspark_home()),
        "SPARK_LOCAL_IP": host,
        # What pyspark's load-spark-env.sh sets: the executor launcher needs it.
        "SPARK_SCALA_VERSION": "2.13",
    }


def master_arguments(host: str, port: int, ui_port: int) -> list[str]:
    return ["--host", host, "--port", str(port), "--webui-port", str(ui_port)]


def worker_arguments(
    master: str, host: str, port: int, ui_port: int, cores: int, memory: str, work_dir: str
) -> list[str]:
    return [
        master,
        "--host",
        host,
        "--port",
        str(port),
        "--webui-port",
        str(ui_port),
        "--cores",
        str(cores),
        "--memory",
        memory,
        "--work-dir",
        work_dir,
    ]


def exec_java(command: list[str], env: Mapping[str, str]) -> None:
    """Replace this process with the JVM (a container's main process)."""
    os.execvpe(command[0], command, dict(env))

"""Apache Airflow 3 for the local stack: api-server, scheduler, dag-processor, triggerer.

Airflow lives in a virtual environment of its own (``<cache>/airflow-<version>-py3.X``, made
with ``uv venv`` + ``uv pip install``), beside ``metalcast-core``, ``metalcast-backup``,
``metalcast-watch``, ``metalcast-models``, ``metalcast-bulk`` and ``metalcast-ingestor``
installed editable from this repository, so its tasks run our code and our venv stays free
of Airflow's dependencies. Metadata lives in the stack's PostgreSQL (database ``airflow``).
Every component listens on 127.0.0.1 only: no ``airflow standalone`` (it opens log servers on
all interfaces); the scheduler and triggerer run with ``--skip-serve-logs`` (logs are local
files the api-server reads). The UI is ``http://127.0.0.1:<airflow_port>``; user ``admin``,
whose password SimpleAuthManager generates into ``$AIRFLOW_HOME``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metalcast.stack._env import stack_env
from metalcast.stack._paths import StackConfig, repo_root
from metalcast.stack._process import (
    StackError,
    is_alive,
    read_pid,
    run,
    spawn,
    wait_ready,
    write_pid,
)
from metalcast.stack._server import (
    Server,
    ServerStatus,
    StartReport,
    file_lock,
    start_concurrently,
)
from metalcast.stack.kafka import Kafka
from metalcast.stack.offsite import OffsiteMinIO
from metalcast.stack.offsite import enabled as offsite_enabled
from metalcast.stack.postgres import USER, Postgres, bin_dir

VERSION = "3.3.2"
DATABASE = "airflow"
ADMIN_USER = "admin"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# The health endpoint's name for each component but the api-server.
_HEALTH_KEYS = {
    "scheduler": "scheduler",
    "dag-processor": "dag_processor",
    "triggerer": "triggerer",
}


def venv_dir(config: StackConfig) -> Path:
    return config.cache_dir / f"airflow-{VERSION}-py{sys.version_info[0]}.{sys.version_info[1]}"


def airflow_bin(config: StackConfig) -> Path:
    return venv_dir(config) / "bin" / "airflow"


def airflow_python(config: StackConfig) -> Path:
    return venv_dir(config) / "bin" / "python"


def home_dir(config: StackConfig) -> Path:
    return config.stack_dir / "airflow" / "home"


def dags_dir() -> Path:
    return repo_root() / "airflow" / "dags"


def url(config: StackConfig) -> str:
    return f"http://{config.host}:{config.airflow_port}"


def install(config: StackConfig, log: Path) -> float:
    """Create the venv with Airflow (once) and (re)install our packages editable into it.
    Returns the seconds spent."""
    import time

    begin = time.monotonic()
    uv = shutil.which("uv")
    if uv is None:
        raise StackError("installing Airflow needs uv on PATH")
    venv = venv_dir(config)
    repo = repo_root()
    stamp = venv / ".metalcast-installed"
    # A new package here, or a changed dependency list of one: reinstall.
    projects = [
        repo / "libs" / "metalcast-core",
        repo / "services" / "backup",
        repo / "services" / "watch",
        repo / "libs" / "metalcast-models",
        repo / "services" / "bulk",
        repo / "services" / "ingestor",
    ]
    deps = hashlib.sha256(b"".join((p / "pyproject.toml").read_bytes() for p in projects))
    wanted = f"{VERSION} {repo} core,backup,watch,models,bulk,ingestor {deps.hexdigest()[:16]}\n"
    log.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(config.cache_dir / f".airflow-{VERSION}.lock"):
        if stamp.is_file() and stamp.read_text() == wanted:
            return 0.0
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        env.pop("VIRTUAL_ENV", None)
        if not airflow_bin(config).is_file():
            run(
                [uv, "venv", "--quiet", "--allow-existing", "--python", sys.executable, str(venv)],
                log,
                env=env,
                what="uv venv (Airflow)",
            )
        run(
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--python",
                str(venv / "bin" / "python"),
                f"apache-airflow=={VERSION}",
                "psycopg2-binary>=2.9",
                "-e",
                str(repo / "libs" / "metalcast-core"),
                "-e",
                str(repo / "services" / "backup"),
                "-e",
                str(repo / "services" / "watch"),
                # The market_data_bulk DAG's tasks (polars, LightGBM, pyspark).
                "-e",
                str(repo / "libs" / "metalcast-models"),
                "-e",
                str(repo / "services" / "bulk"),
                # The metalcast_macro DAG's task (the FRED pull).
                "-e",
                str(repo / "services" / "ingestor"),
            ],
            log,
            env=env,
            what=f"uv pip install apache-airflow=={VERSION}",
            timeout_s=1200,
        )
        stamp.write_text(wanted)
    return time.monotonic() - begin


def _secrets(config: StackConfig) -> dict[str, str]:
    """Secrets every component must share (JWT for the execution API, the UI's session key):
    generated once per stack."""
    path = home_dir(config) / "metalcast-secrets.json"
    if path.is_file():
        data: dict[str, str] = json.loads(path.read_text())
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"jwt_secret": secrets.token_urlsafe(32), "secret_key": secrets.token_urlsafe(32)}
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    return data


def airflow_env(config: StackConfig) -> dict[str, str]:
    """The environment of every Airflow process: Airflow's settings plus the ``METALCAST_*``
    ones our tasks read (the stack's servers, the stack's pg_dump)."""
    secret = _secrets(config)
    base = url(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "METALCAST_"))}
    env.pop("VIRTUAL_ENV", None)
    env.update(
        stack_env(
            pg_host=config.host,
            pg_port=config.pg_port,
            kafka_bootstrap=Kafka(config).address,
            s3_endpoint=f"http://{config.host}:{config.s3_port}",
            offsite_endpoint=(
                f"http://{OffsiteMinIO(config).address}" if offsite_enabled(config) else None
            ),
        )
    )
    env.update(
        {
            # setproctitle must leave /proc/<pid>/environ alone: it tells our pids (_ours).
            "SPT_NOENV": "1",
            "METALCAST_BACKUP__PG_BIN_DIR": str(bin_dir()),
            "METALCAST_MIGRATIONS_DIR": str(repo_root() / "infra" / "migrations"),
            "AIRFLOW_HOME": str(home_dir(config)),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_dir()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                f"postgresql+psycopg2://{USER}@{config.host}:{config.pg_port}/{DATABASE}"
            ),
            "AIRFLOW__API__BASE_URL": base,
            "AIRFLOW__API__HOST": config.host,
            "AIRFLOW__API__PORT": str(config.airflow_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secret["secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": secret["jwt_secret"],
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home_dir(config) / "logs"),
        }
    )
    return env


def migrate_metadata(config: StackConfig, log: Path) -> None:
    """Create the ``airflow`` database if missing and run ``airflow db migrate`` (idempotent;
    skipped when this version already migrated it)."""
    postgres = Postgres(config)
    with file_lock(config.stack_dir / ".airflow-db.lock"):
        if postgres.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'") != "1":
            postgres.psql(f'CREATE DATABASE "{DATABASE}"')
        stamp = home_dir(config) / ".metalcast-migrated"
        if stamp.is_file() and stamp.read_text() == VERSION:
            return
        run(
            [str(airflow_bin(config)), "db", "migrate"],
            log,
            env=airflow_env(config),
            what="airflow db migrate",
            timeout_s=600,
        )
        stamp.write_text(VERSION)


def health(config: StackConfig) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{url(config)}/api/v2/monitor/health", timeout=2) as r:
            data: dict[str, Any] = json.loads(r.read())
            return data
    except (urllib.error.URLError, OSError, ValueError):
        return None


class AirflowComponent(Server):
    """One Airflow process. The ``--pid`` file path in its command line is the marker."""

    name = "airflow"
    component = "api-server"
    stop_timeout_s = 30.0
    ready_timeout_s = 180.0

    def __init__(self, config: StackConfig, component: str = "api-server") -> None:
        if component not in COMPONENTS:
            raise ValueError(f"unknown Airflow component {component!r}")
        self.component = component  # before the paths, which depend on it
        super().__init__(config)

    @property
    def implementation(self) -> str:  # type: ignore[override]
        return f"airflow-{self.component}"

    @property
    def state_name(self) -> str:
        return f"airflow/{self.component}"

    @property
    def address(self) -> str:
        if self.component == "api-server":
            return f"{self.config.host}:{self.config.airflow_port}"
        return "-"

    @property
    def marker(self) -> str:
        return str(self.paths.root / "airflow.pid")

    def _ours(self, pid: int | None) -> bool:
        """Airflow rewrites its process titles (``airflow api_server -- ...``), so the pid is
        told from a reused one by its environment: our ``AIRFLOW_HOME``."""
        if not is_alive(pid):
            return False
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return False
        return f"AIRFLOW_HOME={home_dir(self.config)}".encode() in environ

    def pid(self) -> int | None:
        pid = read_pid(self.paths.pid)
        return pid if self._ours(pid) else None

    def _wait(self, what: str) -> None:
        wait_ready(
            self.ready,
            pid=self.pid,
            marker="",
            timeout_s=self.ready_timeout_s,
            what=f"{what} on {self.address}",
            log=self.paths.log,
        )

    def install(self) -> None:
        install(self.config, self.paths.log)

    def launch(self) -> None:
        migrate_metadata(self.config, self.paths.log)
        Path(self.marker).unlink(missing_ok=True)
        argv = [str(airflow_bin(self.config)), self.component]
        if self.component == "api-server":
            argv += ["--host", self.config.host, "--port", str(self.config.airflow_port)]
        if self.component in {"scheduler", "triggerer"}:
            argv.append("--skip-serve-logs")
        argv += ["--pid", self.marker]
        proc = spawn(argv, self.paths.log, env=airflow_env(self.config), cwd=self.paths.root)
        write_pid(self.paths.pid, proc.pid)

    def ready(self) -> bool:
        report = health(self.config)
        if report is None:
            return False
        if self.component == "api-server":
            return True
        status = (report.get(_HEALTH_KEYS[self.component]) or {}).get("status")
        return bool(status == "healthy")

    def setup(self) -> None:
        return None


def components(config: StackConfig) -> list[AirflowComponent]:
    return [AirflowComponent(config, name) for name in COMPONENTS]


def start(config: StackConfig) -> dict[str, StartReport]:
    """Install if needed, migrate, then start the api-server and the other three."""
    api, *others = components(config)
    reports = {f"airflow-{api.component}": api.start()}
    reports.update(
        start_concurrently({f"airflow-{c.component}": c.start for c in others}, "Airflow")
    )
    return reports


def stop(config: StackConfig) -> None:
    # Scheduler and friends first: they talk to the api-server while they wind down.
    api, *others = components(config)
    with ThreadPoolExecutor(max_workers=len(others), thread_name_prefix="airflow-down") as pool:
        for future in [pool.submit(c.stop) for c in others]:
            future.result()
    api.stop()


def statuses(config: StackConfig) -> dict[str, ServerStatus]:
    """The components that were ever started on this stack (their folder exists)."""
    return {
        f"airflow-{c.component}": c.status() for c in components(config) if c.paths.root.is_dir()
    }


@dataclass(frozen=True)
class AirflowLogin:
    url: str
    username: str
    password: str | None  # None until the api-server first started


def login(config: StackConfig) -> AirflowLogin:
    password = None
    generated = home_dir(config) / "simple_auth_manager_passwords.json.generated"
    if generated.is_file():
        password = json.loads(generated.read_text()).get(ADMIN_USER)
    return AirflowLogin(url(config), ADMIN_USER, password)


def run_cli(config: StackConfig, args: list[str], *, timeout_s: float = 600.0) -> str:
    """``airflow <args>`` in the stack's Airflow environment; its output (raises on failure)."""
    result = subprocess.run(
        [str(airflow_bin(config)), *args],
        env=airflow_env(config),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise StackError(f"airflow {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


__all__ = [
    "COMPONENTS",
    "VERSION",
    "AirflowComponent",
    "AirflowLogin",
    "airflow_env",
    "airflow_python",
    "dags_dir",
    "install",
    "login",
    "migrate_metadata",
    "run_cli",
    "start",
    "statuses",
    "stop",
    "url",
]

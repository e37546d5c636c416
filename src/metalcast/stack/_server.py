"""What every server of the local stack has in common: install, start, readiness, stop."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from metalcast.stack._paths import ServerPaths, StackConfig
from metalcast.stack._process import (
    StackError,
    is_alive,
    listener_of,
    memory_kib,
    running_pid,
    stop_pid,
    wait_ready,
)

log = logging.getLogger("metalcast.stack")


@dataclass(frozen=True)
class ServerStatus:
    """One server as :func:`metalcast.stack.status` sees it."""

    name: str
    implementation: str
    running: bool
    pid: int | None
    address: str
    log: Path
    rss_kib: int | None = None
    pss_kib: int | None = None


@dataclass(frozen=True)
class StartReport:
    """What :meth:`Server.start` did: ``started`` is False when it found the server running."""

    name: str
    implementation: str
    started: bool
    pid: int
    seconds: float
    install_seconds: float = 0.0


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (two ``up()`` at once must not start two servers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# What each server is busy with while it starts (set by the slow steps), for progress lines.
_activity: dict[str, str] = {}


def report_activity(name: str, text: str) -> None:
    """Say what server ``name`` is doing now (shown while the stack waits for it)."""
    _activity[name] = text


def start_concurrently(
    starters: Mapping[str, Callable[[], StartReport]],
    what: str,
    progress: Callable[[str], None] | None = None,
    every_s: float = 10.0,
) -> dict[str, StartReport]:
    """Run every starter in its own thread; wait for all, then raise one :class:`StackError`
    naming each that failed (``what`` did not come up) or return the reports by name.

    ``progress`` receives a line as each server is ready, and every ``every_s`` seconds a
    line naming what is still starting and what it is doing (a first MinIO build takes
    minutes)."""
    reports: dict[str, StartReport] = {}
    errors: list[str] = []
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(starters), thread_name_prefix="stack-up") as pool:
        futures = {name: pool.submit(start) for name, start in starters.items()}
        pending = dict(futures)
        while pending:
            done, _ = wait(pending.values(), timeout=every_s, return_when=FIRST_COMPLETED)
            elapsed = time.monotonic() - began
            for name in [n for n, f in pending.items() if f in done]:
                future = pending.pop(name)
                _activity.pop(name, None)
                if progress is None:
                    continue
                if future.exception() is not None:
                    progress(f"  {name:<10} failed after {elapsed:.0f} s")
                else:
                    report = future.result()
                    state = "started" if report.started else "already running"
                    progress(f"  {name:<10} {report.implementation:<19} {state} ({elapsed:.1f} s)")
            if pending and not done and progress is not None:
                busy = "; ".join(
                    f"{n}: {_activity.get(n, 'waiting until it answers')}" for n in pending
                )
                progress(f"  ... {elapsed:.0f} s, still starting {busy}")
        for name, future in futures.items():
            try:
                reports[name] = future.result()
            except Exception as exc:
                errors.append(f"{name}: {exc}")
    if errors:
        raise StackError(
            f"{what} did not come up:\n" + "\n\n".join(errors),
            started=[name for name, report in reports.items() if report.started],
        )
    return reports


class Server(ABC):
    """A server process of the stack. Subclasses say how to install, launch and probe it."""

    name: str
    implementation: str
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout_s: float = 30.0
    ready_timeout_s: float = 90.0

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.paths: ServerPaths = config.server(self.state_name)

    @property
    def state_name(self) -> str:
        """The folder under the stack dir; differs from ``name`` for the S3 implementations."""
        return self.name

    @property
    @abstractmethod
    def address(self) -> str: ...

    @property
    @abstractmethod
    def marker(self) -> str:
        """A string in the server's command line (its data dir): tells it from a reused pid."""

    @abstractmethod
    def install(self) -> None:
        """Fetch or build what the server needs into the cache, if missing."""

    @abstractmethod
    def launch(self) -> None:
        """Initialise the data dir if needed and start the process; write the pid file."""

    @abstractmethod
    def ready(self) -> bool:
        """Whether the server answers a real request."""

    @abstractmethod
    def setup(self) -> None:
        """After readiness: databases, topics, buckets. Must be idempotent."""

    def pid(self) -> int | None:
        return running_pid(self.paths.pid, self.marker)

    def start(self) -> StartReport:
        begin = time.monotonic()
        with file_lock(self.config.stack_dir / f".{self.state_name}.lock"):
            pid = self.pid()
            if pid is not None:
                self._wait(f"{self.implementation} (pid {pid})")
                self.setup()
                return StartReport(
                    self.name, self.implementation, False, pid, time.monotonic() - begin
                )
            self._refuse_held_ports()
            t0 = time.monotonic()
            self.install()
            installed = time.monotonic() - t0
            self.paths.root.mkdir(parents=True, exist_ok=True)
            self.paths.pid.unlink(missing_ok=True)
            log.info("starting %s on %s", self.implementation, self.address)
            t1 = time.monotonic()
            self.launch()
            self._wait(self.implementation)
            self.setup()
            pid = self.pid()
            if pid is None:
                raise StackError(f"{self.implementation} is ready but its pid file is missing")
            return StartReport(
                self.name, self.implementation, True, pid, time.monotonic() - t1, installed
            )

    def ports(self) -> list[int]:
        """Every TCP port the server listens on (its address's; more where it has more)."""
        return [int(self.address.rsplit(":", 1)[1])]

    def _refuse_held_ports(self) -> None:
        """A port this stack would start on, held by another process, is refused with that
        process named: starting anyway would fail obscurely, or (an orphan from another
        checkout) answer for this stack with the wrong data."""
        for port in self.ports():
            holder = listener_of(port)
            if holder is not None:
                pid, command = holder
                raise StackError(
                    f"port {port} for {self.implementation} is held by pid {pid} "
                    f"({command[:200] or 'command unknown'}), not by this stack: stop it, or "
                    f"choose other ports (METALCAST_STACK_*_PORT)"
                )

    def _wait(self, what: str) -> None:
        wait_ready(
            self.ready,
            pid=lambda: running_pid(self.paths.pid, self.marker),
            marker=self.marker,
            timeout_s=self.ready_timeout_s,
            what=f"{what} on {self.address}",
            log=self.paths.log,
        )

    def stop(self) -> bool:
        """Stop the server by its pid. Returns whether it was running."""
        pid = self.pid()
        if pid is not None:
            log.info("stopping %s (pid %d)", self.implementation, pid)
            stop_pid(pid, self.stop_signal, self.stop_timeout_s)
        self.paths.pid.unlink(missing_ok=True)
        return pid is not None

    def purge(self) -> None:
        if self.pid() is not None:
            raise StackError(f"{self.implementation} still runs; stop it before purging")
        shutil.rmtree(self.paths.root, ignore_errors=True)

    def status(self) -> ServerStatus:
        pid = self.pid()
        rss = pss = None
        if pid is not None and is_alive(pid):
            rss, pss = memory_kib(pid)
        return ServerStatus(
            name=self.name,
            implementation=self.implementation,
            running=pid is not None,
            pid=pid,
            address=self.address,
            log=self.paths.log,
            rss_kib=rss,
            pss_kib=pss,
        )

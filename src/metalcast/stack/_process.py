"""Start, find and stop server processes that outlive the Python process that started them."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

UNPRIVILEGED_USER = "nobody"
UNPRIVILEGED_GROUP = "nogroup"


class StackError(RuntimeError):
    """A server of the local stack could not be installed, started or stopped.

    ``started``: the servers the failed call had started (and so should stop again)."""

    def __init__(self, message: str, started: list[str] | None = None) -> None:
        super().__init__(message)
        self.started: list[str] = list(started or [])


def log_tail(log: Path, lines: int = 40) -> str:
    try:
        with log.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return f"(no log at {log})"
    return "\n".join(text.splitlines()[-lines:])


def fail(message: str, log: Path) -> StackError:
    return StackError(f"{message}\n--- last lines of {log} ---\n{log_tail(log)}")


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def write_pid(path: Path, pid: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def is_alive(pid: int | None, marker: str | None = None) -> bool:
    """Whether ``pid`` runs, is no zombie and (if given) has ``marker`` in its command line.

    The marker guards against a stale pid file whose number was reused by another program.
    """
    if pid is None or pid <= 0:
        return False
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rpartition(")")[2].split()[0] in {"Z", "X"}:
        return False
    return marker is None or marker in cmdline(pid)


def running_pid(pid_file: Path, marker: str) -> int | None:
    pid = read_pid(pid_file)
    return pid if is_alive(pid, marker) else None


def stop_pid(pid: int, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 30.0) -> None:
    """Send ``sig``, wait up to ``timeout_s`` for the process to go, then SIGKILL it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout_s
    while is_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 10
            while is_alive(pid):
                if time.monotonic() > kill_deadline:
                    raise StackError(f"process {pid} survived SIGKILL")
                time.sleep(0.05)
            return
        time.sleep(0.05)


def unprivileged() -> tuple[int, int] | None:
    """(uid, gid) to drop to when running as root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    user = pwd.getpwnam(UNPRIVILEGED_USER)
    return user.pw_uid, grp.getgrnam(UNPRIVILEGED_GROUP).gr_gid


def as_unprivileged(argv: Sequence[str]) -> list[str]:
    """Prefix ``argv`` with setpriv when we are root (PostgreSQL refuses to run as root)."""
    if unprivileged() is None:
        return list(argv)
    return [
        "setpriv",
        f"--reuid={UNPRIVILEGED_USER}",
        f"--regid={UNPRIVILEGED_GROUP}",
        "--clear-groups",
        "--",
        *argv,
    ]


def chown_tree(path: Path) -> None:
    """Give ``path`` (and everything under it) to the unprivileged user, when we are root."""
    ids = unprivileged()
    if ids is None:
        return
    uid, gid = ids
    os.chown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def spawn(
    argv: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (it survives our exit), output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )


def run(
    argv: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 600.0,
    what: str,
) -> None:
    """Run a set-up command to completion, its output appended to ``log``; raise on failure."""
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            result = subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                timeout=timeout_s,
                start_new_session=True,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise fail(f"{what} timed out after {timeout_s:.0f} s", log) from exc
    if result.returncode != 0:
        raise fail(f"{what} failed (exit {result.returncode})", log)


def listener_of(port: int) -> tuple[int, str] | None:
    """(pid, command line) of the process listening on TCP ``port`` (any address), if this
    machine's /proc shows one; ``None`` when nothing listens or the owner is not visible."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(proc.name), cmdline(int(proc.name)).strip()
        except OSError:
            continue
    return None


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_ready(
    check: Callable[[], bool],
    *,
    pid: Callable[[], int | None],
    marker: str,
    timeout_s: float,
    what: str,
    log: Path,
) -> None:
    """Poll ``check`` until it is true; fail early, with the log's tail, if the server died."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return
        if not is_alive(pid(), marker):
            # One last look: the pid may have been read before the server wrote it.
            time.sleep(0.2)
            if not is_alive(pid(), marker) and not check():
                raise fail(f"{what} exited before it was ready", log)
        if time.monotonic() > deadline:
            raise fail(f"{what} not ready after {timeout_s:.0f} s", log)
        time.sleep(0.1)


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB of ``pid`` and its descendants. PSS shares shared pages out fairly."""
    rss = pss = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "Rss":
                    rss += int(value.split()[0])
                elif key == "Pss":
                    pss += int(value.split()[0])
        except OSError:
            continue
    return rss, pss


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, even under a running event loop
    (then in a thread of its own): ``up()`` may be called from async code."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stack-async") as pool:
        return pool.submit(asyncio.run, coro).result()

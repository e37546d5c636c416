"""Stopping a service on a signal, even when it waits on something that never answers."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest

from metalcast_core import run_until_signal


def _signal_soon(sig: signal.Signals, after_s: float) -> None:
    threading.Timer(after_s, os.kill, (os.getpid(), sig)).start()


def test_a_service_that_stops_by_itself_returns_its_result() -> None:
    async def serve(stop: asyncio.Event) -> str:
        await stop.wait()
        return "stopped cleanly"

    _signal_soon(signal.SIGTERM, 0.2)
    assert run_until_signal(serve, grace_s=5) == "stopped cleanly"


def test_a_service_stuck_waiting_is_cancelled_after_the_grace_and_cleans_up() -> None:
    cleaned: list[str] = []

    async def serve(stop: asyncio.Event) -> str:
        try:
            await asyncio.sleep(3600)  # e.g. retrying a database that never answers
        finally:
            cleaned.append("finally ran")
        return "never"

    _signal_soon(signal.SIGTERM, 0.2)
    began = time.monotonic()
    with pytest.raises(SystemExit) as exited:
        run_until_signal(serve, grace_s=0.5)
    assert exited.value.code == 128 + signal.SIGTERM
    assert time.monotonic() - began < 3
    assert cleaned == ["finally ran"]


def test_a_second_signal_cancels_at_once() -> None:
    async def serve(stop: asyncio.Event) -> None:
        await asyncio.sleep(3600)

    _signal_soon(signal.SIGINT, 0.2)
    _signal_soon(signal.SIGINT, 0.9)
    began = time.monotonic()
    with pytest.raises(SystemExit) as exited:
        run_until_signal(serve, grace_s=60)
    assert exited.value.code == 128 + signal.SIGINT
    assert time.monotonic() - began < 3


def test_the_same_signal_forwarded_at_once_is_one_stop() -> None:
    # Ctrl-C under `uv run`: the terminal's SIGINT and uv's forwarded copy arrive together.
    async def serve(stop: asyncio.Event) -> str:
        await stop.wait()
        await asyncio.sleep(0.5)  # a clean shutdown that takes a moment
        return "stopped cleanly"

    _signal_soon(signal.SIGINT, 0.2)
    _signal_soon(signal.SIGINT, 0.25)
    assert run_until_signal(serve, grace_s=5) == "stopped cleanly"


def test_a_clean_up_that_hangs_cannot_keep_the_process_alive() -> None:
    """A finally block that waits forever (a leave-group request to a busy coordinator):
    the process still ends about two graces after SIGTERM, with 128 + SIGTERM."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import asyncio, sys
        from metalcast_core import run_until_signal

        async def serve(stop):
            try:
                await asyncio.sleep(3600)
            finally:
                print("cleaning up", flush=True)
                await asyncio.sleep(3600)  # never finishes

        print("ready", flush=True)
        run_until_signal(serve, grace_s=0.5)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=10)
    assert code == 128 + signal.SIGTERM
    assert time.monotonic() - began < 4
    assert "cleaning up" in proc.stdout.read()

"""Running a service until it is told to stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

# How long a service may take to stop by itself after SIGTERM/SIGINT before it is cancelled
# wherever it waits (a database that does not answer, a broker, S3): compose's stop and a
# rolling deploy must not hang. A second signal cancels at once.
STOP_GRACE_S = 5.0
# One Ctrl-C often arrives twice: the terminal signals the whole process group, and a
# launcher in it (`uv run`, `make`) forwards the same signal to its child. A repeat this
# soon after the first is that same signal, not a second one.
REPEAT_WITHIN_S = 0.5


def log_tasks() -> None:
    """Log where every task of the running loop waits (``kill -USR1 <pid>`` on a service
    that seems stuck: what it is waiting for, without stopping it)."""
    tasks = asyncio.all_tasks()
    log.warning("SIGUSR1: %d task(s)", len(tasks))
    for task in tasks:
        frames = task.get_stack(limit=12)
        where = " <- ".join(
            f"{f.f_code.co_name} ({f.f_code.co_filename.rsplit('/', 2)[-1]}:{f.f_lineno})"
            for f in reversed(frames)
        )
        log.warning("  %s: %s", task.get_name(), where or "(not started)")


def run_until_signal(
    serve: Callable[[asyncio.Event], Awaitable[T]], grace_s: float = STOP_GRACE_S
) -> T:
    """Run ``serve(stop)`` in a new event loop; SIGINT or SIGTERM sets ``stop``; SIGUSR1
    logs every task and where it waits (:func:`log_tasks`).

    A service that has not returned ``grace_s`` seconds after the signal (or at a second
    signal, other than the same one forwarded within ``REPEAT_WITHIN_S``) is cancelled: its
    ``finally`` blocks run (clients stop, uncommitted work is abandoned, never
    half-committed) and the process exits with 128 + the signal number. If
    that clean-up itself hangs (a Kafka client's leave-group request can wait 40 s for a
    busy coordinator) the process ends ``grace_s`` later regardless: nothing it had not
    committed is lost (offsets move only after the database commit)."""

    async def main() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(serve(stop))
        received: list[int] = []

        def hard_exit() -> None:
            log.error("clean-up still running %.0f s after cancelling: exiting now", grace_s)
            logging.shutdown()
            os._exit(128 + (received[0] if received else signal.SIGTERM))

        def cancel() -> None:
            if not task.done():
                log.warning(
                    "still running %.0f s after the signal: cancelling wherever it waits",
                    grace_s,
                )
                task.cancel()
                loop.call_later(grace_s, hard_exit)

        first_at: list[float] = []

        def on_signal(signum: int) -> None:
            received.append(signum)
            if stop.is_set():
                if loop.time() - first_at[0] < REPEAT_WITHIN_S:
                    log.info("signal %d again at once: the same stop, forwarded", signum)
                    return
                cancel()  # a second signal: do not wait any longer
                return
            first_at.append(loop.time())
            stop.set()
            loop.call_later(grace_s, cancel)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, int(sig))
        loop.add_signal_handler(signal.SIGUSR1, log_tasks)
        try:
            return await task
        except asyncio.CancelledError:
            if received:
                raise SystemExit(128 + received[0]) from None
            raise

    return asyncio.run(main())

"""Running a service until it is told to stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def run_until_signal(serve: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run ``serve(stop)`` in a new event loop; SIGINT or SIGTERM sets ``stop``."""

    async def main() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await serve(stop)

    return asyncio.run(main())

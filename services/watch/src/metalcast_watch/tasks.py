"""What Airflow's ``metalcast_watch`` task calls: synchronous, settings from the environment.

The DAG file imports this module inside its task function, never at parse time.
"""

from __future__ import annotations

import asyncio

from metalcast_watch.config import WatchSettings
from metalcast_watch.watch import watch


def check_pipeline(settings: WatchSettings | None = None) -> str:
    """The watch; raises :class:`~metalcast_watch.watch.WatchFailed` listing every problem."""
    asyncio.run(watch(settings or WatchSettings()))
    print("metalcast watch: all checks passed")
    return "ok"

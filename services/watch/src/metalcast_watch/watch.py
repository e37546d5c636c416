"""One watch run: observe, evaluate, record the run in ``ops.watch_runs``; raise
:class:`WatchFailed` listing every problem."""

from __future__ import annotations

import json
import logging

import asyncpg

from metalcast_watch.config import WatchSettings
from metalcast_watch.observe import observe
from metalcast_watch.rules import evaluate

log = logging.getLogger("metalcast.watch")


class WatchFailed(RuntimeError):
    """The pipeline is unhealthy; the message lists every reason."""


async def watch(settings: WatchSettings, *, raise_on_problems: bool = True) -> list[str]:
    """Observe, evaluate, record the run; raise :class:`WatchFailed` listing every problem."""
    conn = await asyncpg.connect(settings.postgres.url)
    try:
        figures = await observe(settings, conn)
        problems = evaluate(figures, settings.watch)
        await conn.execute(
            "INSERT INTO ops.watch_runs (checked_at, ok, problems, figures) "
            "VALUES ($1, $2, $3::jsonb, $4::jsonb)",
            figures.checked_at,
            not problems,
            json.dumps(problems),
            figures.as_json(),
        )
    finally:
        await conn.close()
    log.info("watch figures: %s", figures.as_json())
    if problems and raise_on_problems:
        raise WatchFailed("metalcast watch FAILED:\n" + "\n".join(f"  - {p}" for p in problems))
    return problems

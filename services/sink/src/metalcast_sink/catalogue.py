"""The instrument catalogue as the sink sees it: read at start, re-read every
``sink.catalogue_refresh_s`` so that an instrument added meanwhile is accepted without a
restart. A failed refresh keeps the last good catalogue (and says so)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from metalcast_core import Catalogue, fetch_catalogue

log = logging.getLogger(__name__)

Connect = Callable[[], Awaitable[asyncpg.Connection]]


async def load_into(catalogue: Catalogue, conn: asyncpg.Connection) -> int:
    """Read ``ref.instruments`` into ``catalogue``; returns how many instruments it holds."""
    instruments = await fetch_catalogue(conn)
    catalogue.replace(instruments)
    return len(instruments)


async def refresh(catalogue: Catalogue, connect: Connect) -> int:
    """:func:`load_into` on a connection of its own."""
    conn = await connect()
    try:
        return await load_into(catalogue, conn)
    finally:
        await conn.close()


async def keep_fresh(
    catalogue: Catalogue, connect: Connect, every_s: float, stop: asyncio.Event
) -> None:
    """Refresh ``catalogue`` every ``every_s`` seconds until ``stop`` is set."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        if stop.is_set():
            return
        try:
            await refresh(catalogue, connect)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("catalogue refresh failed, keeping the last one: %s", exc)

"""/v1/stream/ticks: Server-Sent Events relaying prices.ticks.v1 (and models.trained.v1 and
models.production.v1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from metalcast_api.deps import HubDep, SettingsDep
from metalcast_api.errors import unprocessable

router = APIRouter(prefix="/v1/stream", tags=["stream"])


async def wanted_symbols(
    settings: SettingsDep,
    symbols: Annotated[
        list[str] | None,
        Query(description="Only these symbols (repeat the parameter); default: all"),
    ] = None,
) -> frozenset[str] | None:
    """Checked before the stream starts, so an unknown symbol is a plain 422."""
    if not symbols:
        return None
    wanted = frozenset(s.upper() for s in symbols)
    unknown = sorted(wanted - set(settings.known_symbols))
    if unknown:
        unprocessable(
            "query",
            "symbols",
            f"unknown symbol(s) {', '.join(unknown)}; "
            f"known symbols: {', '.join(settings.known_symbols)}",
        )
    return wanted


@router.get(
    "/ticks",
    response_class=EventSourceResponse,
    summary="Live prices as Server-Sent Events",
    responses={422: {"description": "Unknown symbol in `symbols`"}},
)
async def tick_stream(
    hub: HubDep,
    settings: SettingsDep,
    wanted: Annotated[frozenset[str] | None, Depends(wanted_symbols)],
    limit: Annotated[
        int | None, Query(ge=1, le=100_000, description="Close after this many events")
    ] = None,
) -> AsyncIterator[ServerSentEvent]:
    """`text/event-stream`. First a `hello` event, then one `tick` event per price the
    ingestor publishes from now on (`data`: symbol, price, currency, instrument, source,
    observed_at), a `models` event when the trainer finishes a run (run_id, versions,
    promoted, failed, finished_at, status, decisions) and a `production` event when a
    production pointer moves, is pinned or unpinned (symbol, action, from_version,
    to_version, pinned, changed_by, reason, changed_at). A comment line every 15 s keeps
    idle connections open. Browsers: `new EventSource('/v1/stream/ticks')`."""
    sent = 0
    async with hub.subscribe(wanted) as sub:
        yield ServerSentEvent(
            event="hello",
            data={"symbols": sorted(wanted) if wanted else settings.known_symbols},
            retry=3000,
        )
        while limit is None or sent < limit:
            try:
                item = await asyncio.wait_for(sub.queue.get(), timeout=15.0)
            except TimeoutError:
                continue
            sent += 1
            yield ServerSentEvent(event=item.event, data=item.data)

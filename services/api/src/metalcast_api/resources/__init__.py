"""The API's long-lived resources, built and closed by the app's lifespan.

:func:`open_resources` builds them all (the PostgreSQL pool, the S3 client, the forecast
cache and its pointer check, the stream's event hub and its Kafka consumer, the latest-prices
cache, the producer of ``models.production.v1``, the volume model), hands them over as one
:class:`Resources` (``app.state.api``; handlers reach it through ``metalcast_api.deps``)
and closes them when the app stops.

The feature folders (prices, models, forecasts, stream, ops, dashboard, volume, bulk) hold
views, schemas and queries, and import from here; nothing here imports from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from metalcast_api.config import ApiSettings
from metalcast_api.metrics import ApiMetrics
from metalcast_api.resources.events import ProductionEvents
from metalcast_api.resources.forecasts import ForecastCache
from metalcast_api.resources.hub import EventHub
from metalcast_api.resources.latest import LatestCache
from metalcast_api.resources.volume import VolumeModels
from metalcast_core import ModelsTrained, ProductionChanged, create_pool, make_s3_client
from metalcast_models.volume import VOLUME_SYMBOL

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["KAFKA_START_WAIT_S", "Resources", "open_resources"]

log = logging.getLogger(__name__)

# How long start-up waits for the stream's Kafka consumer before serving without it
# (/readyz then says Kafka is not reachable; the consumer keeps retrying).
KAFKA_START_WAIT_S = 10.0


@dataclass
class Resources:
    """What the lifespan builds and the handlers use: one object on ``app.state.api``."""

    settings: ApiSettings
    pool: asyncpg.Pool
    s3: S3Client
    metrics: ApiMetrics
    forecasts: ForecastCache
    hub: EventHub
    latest: LatestCache
    events: ProductionEvents
    volume: VolumeModels


@contextlib.asynccontextmanager
async def open_resources(settings: ApiSettings, metrics: ApiMetrics) -> AsyncIterator[Resources]:
    """Build every resource and start its background work (the stream's consumer, the
    pointer check); on exit cancel that work, stop the producer and close the pool."""
    pool = await create_pool(settings.postgres)
    tasks: list[asyncio.Task[None]] = []
    events = ProductionEvents(settings.kafka, settings.api.publish_timeout_s)
    try:
        s3 = make_s3_client(settings.s3)
        forecasts = ForecastCache(
            s3, pool, metrics, settings.api.max_horizon_h, settings.api.pointer_ttl_s
        )

        async def on_models_trained(event: ModelsTrained) -> None:
            forecasts.pointers.invalidate()
            loaded = await forecasts.refresh()
            log.info("models.trained.v1 run %d: preloaded %s", event.run_id, loaded or "-")

        volume = VolumeModels(s3, pool, settings.api.volume_pointer_ttl_s)

        async def on_production_changed(event: ProductionChanged) -> None:
            if event.symbol == VOLUME_SYMBOL:
                volume.invalidate()
                return
            forecasts.pointers.invalidate()
            loaded = await forecasts.refresh()
            log.info(
                "models.production.v1 %s %s v%d: preloaded %s",
                event.action,
                event.symbol,
                event.to_version,
                loaded or "-",
            )

        hub = EventHub(
            settings.kafka,
            metrics,
            settings.api.stream_buffer,
            on_models_trained,
            on_production_changed,
        )
        resources = Resources(
            settings=settings,
            pool=pool,
            s3=s3,
            metrics=metrics,
            forecasts=forecasts,
            hub=hub,
            latest=LatestCache(settings.api.latest_cache_s),
            events=events,
            volume=volume,
        )
        tasks.append(asyncio.create_task(hub.run(), name="stream-consumer"))
        tasks.append(
            asyncio.create_task(
                forecasts.watch_pointers(settings.api.pointer_check_s), name="pointer-check"
            )
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hub.started.wait(), KAFKA_START_WAIT_S)
        yield resources
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await events.stop()
        await pool.close()

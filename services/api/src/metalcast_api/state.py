"""What the lifespan builds and the handlers use: one object on ``app.state.api``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from metalcast_api.config import ApiSettings
from metalcast_api.events import ProductionEvents
from metalcast_api.forecasts.cache import ForecastCache
from metalcast_api.metrics import ApiMetrics
from metalcast_api.prices.service import LatestCache
from metalcast_api.stream.hub import EventHub

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass
class ApiState:
    settings: ApiSettings
    pool: asyncpg.Pool
    s3: S3Client
    metrics: ApiMetrics
    forecasts: ForecastCache
    hub: EventHub
    latest: LatestCache
    events: ProductionEvents

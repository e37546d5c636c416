"""``Annotated`` dependency aliases: handlers name what they need, the lifespan provides it
(:class:`metalcast_api.resources.Resources` on ``app.state.api``).

Every dependency is ``async def``: FastAPI runs plain ``def`` dependencies in a thread pool,
a thread hop per dependency per request for what are attribute reads.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import asyncpg
from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from metalcast_api.config import ApiSettings
from metalcast_api.errors import metal_or_404, not_found
from metalcast_api.metrics import ApiMetrics
from metalcast_api.resources import Resources
from metalcast_api.resources.events import ProductionEvents
from metalcast_api.resources.forecasts import ForecastCache
from metalcast_api.resources.hub import EventHub
from metalcast_api.resources.volume import VolumeModels
from metalcast_core import METAL_SYMBOLS, METALS_BY_SYMBOL, Metal

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.api
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_settings(state: ResourcesDep) -> ApiSettings:
    return state.settings


async def get_conn(state: ResourcesDep) -> AsyncIterator[asyncpg.Connection]:
    async with state.pool.acquire() as conn:
        yield conn


async def get_s3(state: ResourcesDep) -> S3Client:
    return state.s3


if TYPE_CHECKING:
    S3Dep = Annotated[S3Client, Depends(get_s3)]
else:  # the stubs (mypy_boto3_s3) are a development dependency: FastAPI sees Any
    S3Dep = Annotated[Any, Depends(get_s3)]


async def get_metrics(state: ResourcesDep) -> ApiMetrics:
    return state.metrics


async def get_forecasts(state: ResourcesDep) -> ForecastCache:
    return state.forecasts


async def get_hub(state: ResourcesDep) -> EventHub:
    return state.hub


async def get_events(state: ResourcesDep) -> ProductionEvents:
    return state.events


async def get_volume(state: ResourcesDep) -> VolumeModels:
    return state.volume


async def get_metal(symbol: str) -> Metal:
    """The ``{symbol}`` path parameter as a metal; 404 naming the known symbols otherwise."""
    return metal_or_404(symbol)


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ConnDep = Annotated[asyncpg.Connection, Depends(get_conn)]


async def get_model_symbol(symbol: str, conn: ConnDep) -> str:
    """The ``{symbol}`` path parameter as a symbol that has models: a metal, or any symbol
    with versions in the registry or a model configuration in the catalogue (an instrument,
    the gold valuation ``XAU-VAL``); 404 naming them otherwise."""
    metal = METALS_BY_SYMBOL.get(symbol.upper())
    if metal is not None:
        return metal.symbol
    wanted = symbol.upper()
    if await conn.fetchval(
        """
        SELECT EXISTS (SELECT 1 FROM ml.model_versions WHERE symbol = $1)
            OR EXISTS (SELECT 1 FROM ref.instruments WHERE symbol = $1 AND model IS NOT NULL)
        """,
        wanted,
    ):
        return wanted
    rows = await conn.fetch(
        """
        SELECT DISTINCT symbol FROM ml.model_versions
        UNION SELECT symbol FROM ref.instruments WHERE model IS NOT NULL
        """
    )
    names = sorted({r["symbol"] for r in rows} | set(METAL_SYMBOLS))
    not_found(f"unknown symbol {symbol!r}; known symbols with models: {', '.join(names)}")


MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
ForecastsDep = Annotated[ForecastCache, Depends(get_forecasts)]
HubDep = Annotated[EventHub, Depends(get_hub)]
EventsDep = Annotated[ProductionEvents, Depends(get_events)]
MetalDep = Annotated[Metal, Depends(get_metal)]
ModelSymbolDep = Annotated[str, Depends(get_model_symbol)]
VolumeDep = Annotated[VolumeModels, Depends(get_volume)]

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="METALCAST_API__API_KEY"
)


async def require_api_key(
    settings: SettingsDep, key: Annotated[str | None, Security(_api_key_header)]
) -> str:
    """401 without a key, 403 with a wrong one. Returns who acted (for the audit trail)."""
    if not key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="this operation needs an API key in the X-API-Key header",
            headers={"WWW-Authenticate": "APIKey"},
        )
    expected = settings.api.api_key.get_secret_value()
    if not secrets.compare_digest(key.encode(), expected.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="the API key is not valid")
    return "api"


ApiKeyDep = Annotated[str, Depends(require_api_key)]

"""Operations: /healthz, /readyz, /metrics (unversioned) and /v1/ops/*."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from metalcast_api.deps import ConnDep, ResourcesDep
from metalcast_api.ops import service
from metalcast_api.ops.schemas import BackupRead, FreshnessRead, HealthRead, ReadyRead

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthRead, summary="The process is up")
async def healthz() -> HealthRead:
    return HealthRead(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyRead,
    responses={503: {"model": ReadyRead, "description": "A dependency is not reachable"}},
    summary="PostgreSQL, S3 and Kafka are reachable",
)
async def readyz(res: ResourcesDep) -> JSONResponse:
    timeout = res.settings.api.ready_timeout_s
    database, s3, kafka = await asyncio.gather(
        service.check_database(res.pool, timeout),
        service.check_s3(res.s3, res.settings.s3.models_bucket, timeout),
        res.hub.ping(timeout),
    )
    checks = {"database": database, "s3": s3, "kafka": kafka or "ok"}
    ready = all(v == "ok" for v in checks.values())
    body = ReadyRead(ready=ready, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    summary="Prometheus metrics",
)
async def metrics(res: ResourcesDep) -> Response:
    """Request counts and latency per route, forecast cache hits and misses, stream clients,
    and the age of the newest price per symbol (read from the database when scraped)."""
    try:
        async with asyncio.timeout(res.settings.api.ready_timeout_s):
            async with res.pool.acquire() as conn:
                rows = await service.freshness(conn, res.settings.known_symbols)
        now = datetime.now(UTC)
        for r in rows:
            if r["last_tick"] is not None:
                age = (now - r["last_tick"]).total_seconds()
                res.metrics.data_age.labels(r["symbol"]).set(age)
                res.metrics.last_observation.labels(r["symbol"]).set(r["last_tick"].timestamp())
    except Exception as exc:  # the metrics still answer; freshness keeps its last values
        log.warning("freshness for /metrics failed: %s", exc)
    return Response(generate_latest(res.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/ops/freshness", response_model=list[FreshnessRead], summary="Data freshness per symbol"
)
async def data_freshness(res: ResourcesDep, conn: ConnDep) -> list[FreshnessRead]:
    """Per known symbol: its newest tick and that tick's age, and its newest hourly value."""
    now = datetime.now(UTC)
    rows = await service.freshness(conn, res.settings.known_symbols)
    return [
        FreshnessRead(
            symbol=r["symbol"],
            last_tick=r["last_tick"],
            tick_age_seconds=(now - r["last_tick"]).total_seconds() if r["last_tick"] else None,
            last_hour=r["last_hour"],
        )
        for r in rows
    ]


@router.get("/v1/ops/backups", response_model=list[BackupRead], summary="Newest backups")
async def backups(
    conn: ConnDep, limit: Annotated[int, Query(ge=1, le=200)] = 10
) -> list[BackupRead]:
    """Backups with their newest verification (empty until the backup service has run)."""
    return [BackupRead(**r) for r in await service.backups(conn, limit)]

"""/v1/models: production versions, every version, training runs, model files, rollback."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import StreamingResponse

from metalcast_api.deps import ApiKeyDep, ConnDep, ForecastsDep, MetalDep, S3Dep, SettingsDep
from metalcast_api.errors import conflict, not_found, responses, unavailable
from metalcast_api.forecasts.cache import ModelUnavailable
from metalcast_api.models import service
from metalcast_api.models.schemas import (
    ArtifactUrlRead,
    PointerMoveRead,
    ProductionRead,
    RollbackRequest,
    TrainingResultRead,
    TrainingRunRead,
    VersionRead,
)
from metalcast_models import registry
from metalcast_models.registry import RollbackRefused, VersionInfo

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/models", tags=["models"])

VersionPath = Annotated[
    int, Path(ge=1, le=2_147_483_647, description="Version number", examples=[3])
]


async def _production(conn: ConnDep) -> list[ProductionRead]:
    pointers = await service.pointers(conn)
    out = []
    for info in await registry.production(conn):
        pointer = pointers.get(info.symbol)
        out.append(
            ProductionRead(
                **VersionRead.of(info).model_dump(),
                promoted_at=pointer["updated_at"] if pointer else None,
                promoted_by=pointer["updated_by"] if pointer else None,
            )
        )
    return out


@router.get(
    "/production", response_model=list[ProductionRead], summary="Production version per symbol"
)
async def production_versions(conn: ConnDep) -> list[ProductionRead]:
    """The version each metal's forecasts use, for every metal that has one."""
    return await _production(conn)


@router.get(
    "/training-runs", response_model=list[TrainingRunRead], summary="Training runs, newest first"
)
async def training_runs(
    conn: ConnDep,
    limit: Annotated[int, Query(ge=1, le=500, description="How many runs")] = 20,
    status: Annotated[
        Literal["running", "succeeded", "partial", "failed"] | None,
        Query(description="Only runs with this status"),
    ] = None,
) -> list[TrainingRunRead]:
    """Each run with its status, error, training window, duration and per-symbol results
    (promoted, kept or failed with the reason)."""
    rows = await service.training_runs(conn, limit, status)
    return [
        TrainingRunRead(
            **{k: v for k, v in row.items() if k != "results"},
            results=[TrainingResultRead(**r) for r in row["results"]],
        )
        for row in rows
    ]


@router.get(
    "/{symbol}/production",
    response_model=ProductionRead,
    responses=responses(404),
    summary="Production version of one metal",
)
async def production_version(metal: MetalDep, conn: ConnDep) -> ProductionRead:
    for item in await _production(conn):
        if item.symbol == metal.symbol:
            return item
    not_found(f"no production model for {metal.symbol} yet: the trainer has not promoted one")


@router.get(
    "/{symbol}/versions",
    response_model=list[VersionRead],
    responses=responses(404),
    summary="Every version of one metal",
)
async def all_versions(metal: MetalDep, conn: ConnDep) -> list[VersionRead]:
    """Newest first, with hyperparameters, fitted parameters and in-sample metrics."""
    return [VersionRead.of(v) for v in await registry.versions(conn, metal.symbol)]


async def _version(conn: ConnDep, symbol: str, version: int) -> VersionInfo:
    info = await registry.get_version(conn, symbol, version)
    if info is None:
        not_found(f"{symbol} has no version {version}")
    return info


@router.get(
    "/{symbol}/versions/{version}",
    response_model=VersionRead,
    responses=responses(404),
    summary="One version",
)
async def one_version(metal: MetalDep, version: VersionPath, conn: ConnDep) -> VersionRead:
    return VersionRead.of(await _version(conn, metal.symbol, version))


@router.get(
    "/{symbol}/versions/{version}/artifact",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The model file (sktime zip)"},
        **responses(404, 503),
    },
    summary="Download a model file (streamed)",
)
async def download_artifact(
    metal: MetalDep, version: VersionPath, conn: ConnDep, s3: S3Dep
) -> StreamingResponse:
    """The file exactly as the trainer stored it; compare its sha256 with the version's."""
    info = await _version(conn, metal.symbol, version)
    bucket, key = registry.parse_uri(info.artifact_uri)
    try:
        obj = await asyncio.to_thread(s3.get_object, Bucket=bucket, Key=key)
    except Exception as exc:
        unavailable(f"{info.artifact_uri} cannot be read from S3: {exc}")
    body = obj["Body"]

    def chunks() -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(1 << 16)
        finally:
            body.close()

    filename = key.rsplit("/", 1)[-1]
    return StreamingResponse(
        chunks(),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{metal.symbol}-v{version}-{filename}"',
            "Content-Length": str(obj["ContentLength"]),
            "X-Sha256": info.sha256,
        },
    )


@router.get(
    "/{symbol}/versions/{version}/artifact-url",
    response_model=ArtifactUrlRead,
    responses=responses(404, 503),
    summary="A short-lived presigned URL of a model file",
)
async def artifact_url(
    metal: MetalDep, version: VersionPath, conn: ConnDep, s3: S3Dep, settings: SettingsDep
) -> ArtifactUrlRead:
    """A GET URL signed for `api.presign_ttl_s` seconds, at the S3 endpoint the API uses."""
    info = await _version(conn, metal.symbol, version)
    bucket, key = registry.parse_uri(info.artifact_uri)
    ttl = settings.api.presign_ttl_s
    try:
        url = await asyncio.to_thread(
            s3.generate_presigned_url,
            "get_object",
            Params={"Bucket": bucket, "Key": key},
            ExpiresIn=ttl,
        )
    except Exception as exc:
        unavailable(f"cannot sign a URL for {info.artifact_uri}: {exc}")
    return ArtifactUrlRead(
        url=url,
        expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
        sha256=info.sha256,
        size_bytes=info.size_bytes,
    )


@router.post(
    "/{symbol}/rollback",
    response_model=PointerMoveRead,
    responses=responses(400, 401, 403, 404, 409),
    summary="Move the production pointer back (API key)",
)
async def rollback(
    metal: MetalDep,
    by: ApiKeyDep,
    conn: ConnDep,
    s3: S3Dep,
    forecasts: ForecastsDep,
    body: Annotated[RollbackRequest | None, Body()] = None,
) -> PointerMoveRead:
    """Point `symbol`'s production at `to_version` (default: the version before the current
    one), after checking that its file downloads, matches its sha256, loads and predicts.
    Refused (409, with the reason) otherwise; the pointer then stays where it was. Forecasts
    use the new version from their next request."""
    to_version = body.to_version if body else None
    with tempfile.TemporaryDirectory(prefix="metalcast-rollback-") as tmp:
        try:
            move = await registry.rollback(conn, s3, metal.symbol, to_version, by, tmp)
        except RollbackRefused as exc:
            conflict(f"rollback refused: {exc}")
    forecasts.pointers.invalidate()  # this process's forecasts use the new version at once
    try:
        await forecasts.refresh()  # preload the version now in production
    except ModelUnavailable as exc:  # pragma: no cover - refresh logs and goes on
        log.warning("preload after rollback failed: %s", exc)
    return PointerMoveRead.of(move)

"""/v1/models: production versions, every version, backtests, training runs, model files,
the pointer's history, rollback and unpin."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import StreamingResponse

from metalcast_api.deps import (
    ApiKeyDep,
    ConnDep,
    EventsDep,
    ForecastsDep,
    ModelSymbolDep,
    S3Dep,
    SettingsDep,
)
from metalcast_api.errors import conflict, not_found, responses, unavailable
from metalcast_api.models import service
from metalcast_api.models.schemas import (
    ArtifactUrlRead,
    BacktestRead,
    CandidateBacktestRead,
    PointerEventRead,
    PointerMoveRead,
    ProductionRead,
    ProductionRef,
    RollbackRequest,
    TrainingResultRead,
    TrainingRunRead,
    UnpinRequest,
    VersionRead,
)
from metalcast_api.resources.events import ProductionEvents
from metalcast_api.resources.forecasts import ForecastCache, ModelUnavailable
from metalcast_models import registry
from metalcast_models.backtest import INTERVAL_METHOD
from metalcast_models.registry import PointerMove, RollbackRefused, VersionInfo

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
        pinned_at = pointer["pinned_at"] if pointer else None
        out.append(
            ProductionRead(
                **VersionRead.of(info).model_dump(),
                promoted_at=pointer["updated_at"] if pointer else None,
                promoted_by=pointer["updated_by"] if pointer else None,
                pinned=pinned_at is not None,
                pinned_at=pinned_at,
                pinned_by=pointer["pinned_by"] if pointer else None,
                pin_reason=pointer["pin_reason"] if pointer else None,
            )
        )
    return out


@router.get(
    "/production", response_model=list[ProductionRead], summary="Production version per symbol"
)
async def production_versions(conn: ConnDep) -> list[ProductionRead]:
    """The version each symbol's forecasts use (metals, instruments, the gold valuation),
    for every symbol that has one."""
    return await _production(conn)


@router.get(
    "/training-runs", response_model=list[TrainingRunRead], summary="Training runs, newest first"
)
async def training_runs(
    conn: ConnDep,
    limit: Annotated[int, Query(ge=1, le=500, description="How many runs")] = 20,
    status: Annotated[
        Literal["running", "succeeded", "partial", "failed", "unchanged"] | None,
        Query(description="Only runs with this status"),
    ] = None,
) -> list[TrainingRunRead]:
    """Each run with its status, error, candidates, training window, duration and
    per-symbol results (promoted, kept, pinned, unchanged or failed with the reason, the
    window used and the champion/challenger decision). A run is `unchanged` when no window
    moved: nothing was fitted and no version was made."""
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
    summary="Production version of one symbol",
)
async def production_version(symbol: ModelSymbolDep, conn: ConnDep) -> ProductionRead:
    for item in await _production(conn):
        if item.symbol == symbol:
            return item
    not_found(f"no production model for {symbol} yet: the trainer has not promoted one")


@router.get(
    "/{symbol}/versions",
    response_model=list[VersionRead],
    responses=responses(404),
    summary="Every version of one symbol",
)
async def all_versions(symbol: ModelSymbolDep, conn: ConnDep) -> list[VersionRead]:
    """Newest first, with hyperparameters, fitted parameters, in-sample metrics, the
    candidate, the training window's span, the backtest, the calibration and the decision."""
    return [VersionRead.of(v) for v in await registry.versions(conn, symbol)]


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
async def one_version(symbol: ModelSymbolDep, version: VersionPath, conn: ConnDep) -> VersionRead:
    """Everything recorded about a version: its fit, its rolling-origin backtest (`backtest`),
    how its forecast intervals are calibrated (`calibration`) and why it was or was not
    promoted (`decision`)."""
    return VersionRead.of(await _version(conn, symbol, version))


def _mase(item: CandidateBacktestRead) -> tuple[bool, float]:
    value = item.summary.mase
    return value is None, value if value is not None else 0.0


@router.get(
    "/{symbol}/backtest",
    response_model=BacktestRead,
    responses=responses(404),
    summary="Every candidate's backtest in the newest run",
)
async def backtest(
    symbol: ModelSymbolDep,
    conn: ConnDep,
    run_id: Annotated[
        int | None,
        Query(ge=1, le=9_223_372_036_854_775_807, description="This run instead of the newest"),
    ] = None,
) -> BacktestRead:
    """The rolling-origin backtest of every candidate configuration (and of the production
    version's, scored on the same origins) from the newest training run that backtested
    this symbol, best MASE first. `in_production` marks the production version's
    configuration; `summary.mae_ratio` compares with the naive last value and
    `summary.coverage_80`/`_95` give the calibrated intervals' coverage. 404 with the reason
    when there is none."""
    found = await service.backtests(conn, symbol, run_id)
    if found is None:
        if run_id is not None:
            not_found(f"run {run_id} has no backtest of {symbol}")
        not_found(
            f"no backtest of {symbol} yet: no training run has had enough of its "
            "history to backtest"
        )
    prod = next((v for v in await registry.production(conn) if v.symbol == symbol), None)
    pin = await registry.pin(conn, symbol) if prod is not None else None
    production_key = prod.candidate_key if prod is not None else None
    candidates = [CandidateBacktestRead.of(item, production_key) for item in found.results]
    candidates.sort(key=_mase)
    run = found.run
    method = next(
        (str(c.calibration["method"]) for c in candidates if c.calibration.get("method")),
        INTERVAL_METHOD,
    )
    return BacktestRead(
        symbol=symbol,
        run_id=run["id"],
        run_status=run["status"],
        trigger=run["trigger"],
        started_at=run["started_at"],
        finished_at=run["finished_at"],
        result=run["result"],
        version=run["version"],
        window_start=run["window_start"],
        window_end=run["window_end"],
        window_hours=run["window_hours"],
        decision=run["decision"],
        production=None
        if prod is None
        else ProductionRef(
            version=prod.version,
            candidate=prod.candidate,
            candidate_key=prod.candidate_key,
            pinned=pin is not None,
        ),
        interval_method=method,
        candidates=candidates,
    )


@router.get(
    "/{symbol}/history",
    response_model=list[PointerEventRead],
    responses=responses(404),
    summary="Every change of the production pointer, newest first",
)
async def pointer_history(
    symbol: ModelSymbolDep,
    conn: ConnDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="How many changes")] = 100,
) -> list[PointerEventRead]:
    """Promotions by the trainer, rollbacks (which pin the pointer) and unpins: who, when,
    why, from which version to which, and whether the pointer was pinned afterwards."""
    return [
        PointerEventRead(
            symbol=row["symbol"],
            action=row["action"],
            from_version=row["from_version"],
            to_version=row["to_version"],
            pinned=row["pinned"],
            changed_by=row["changed_by"],
            changed_at=row["changed_at"],
            reason=row["note"],
        )
        for row in await registry.history(conn, symbol, limit)
    ]


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
    symbol: ModelSymbolDep, version: VersionPath, conn: ConnDep, s3: S3Dep
) -> StreamingResponse:
    """The file exactly as the trainer stored it; compare its sha256 with the version's."""
    info = await _version(conn, symbol, version)
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
            "Content-Disposition": f'attachment; filename="{symbol}-v{version}-{filename}"',
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
    symbol: ModelSymbolDep, version: VersionPath, conn: ConnDep, s3: S3Dep, settings: SettingsDep
) -> ArtifactUrlRead:
    """A GET URL signed for `api.presign_ttl_s` seconds, at the S3 endpoint the API uses."""
    info = await _version(conn, symbol, version)
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


async def _announce(
    move: PointerMove, forecasts: ForecastCache, events: ProductionEvents
) -> PointerMoveRead:
    """After a change: this process's forecasts use the pointer at once (the new version
    preloaded), and models.production.v1 tells the other processes and the dashboards."""
    forecasts.pointers.invalidate()
    try:
        await forecasts.refresh()
    except ModelUnavailable as exc:  # pragma: no cover - refresh logs and goes on
        log.warning("preload after %s failed: %s", move.action, exc)
    published = await events.publish(move)
    return PointerMoveRead.of(move, published)


@router.post(
    "/{symbol}/rollback",
    response_model=PointerMoveRead,
    responses=responses(400, 401, 403, 404, 409),
    summary="Move the production pointer back and pin it (API key)",
)
async def rollback(
    symbol: ModelSymbolDep,
    by: ApiKeyDep,
    conn: ConnDep,
    s3: S3Dep,
    forecasts: ForecastsDep,
    events: EventsDep,
    body: Annotated[RollbackRequest | None, Body()] = None,
) -> PointerMoveRead:
    """Point `symbol`'s production at `to_version` (default: the version before the current
    one), after checking that its file downloads, matches its sha256, loads and predicts,
    and **pin** it there: the trainer keeps recording new versions but promotes none until
    `POST /v1/models/{symbol}/unpin`. Refused (409, with the reason) otherwise, e.g. the
    version is already in production and pinned; the pointer then stays where it was.
    `reason` is kept in the history. Forecasts use the new version from their next request;
    `models.production.v1` is published."""
    to_version = body.to_version if body else None
    reason = body.reason if body else None
    with tempfile.TemporaryDirectory(prefix="metalcast-rollback-") as tmp:
        try:
            move = await registry.rollback(conn, s3, symbol, to_version, by, tmp, reason=reason)
        except RollbackRefused as exc:
            conflict(f"rollback refused: {exc}")
    return await _announce(move, forecasts, events)


@router.post(
    "/{symbol}/unpin",
    response_model=PointerMoveRead,
    responses=responses(400, 401, 403, 404, 409),
    summary="Hand the production pointer back to the trainer (API key)",
)
async def unpin(
    symbol: ModelSymbolDep,
    by: ApiKeyDep,
    conn: ConnDep,
    forecasts: ForecastsDep,
    events: EventsDep,
    body: Annotated[UnpinRequest | None, Body()] = None,
) -> PointerMoveRead:
    """Lift the pin a rollback set: production stays on its version until the trainer's
    next champion/challenger decision moves it. 409 with the reason when the pointer is not
    pinned (or the symbol has no production version). `reason` is kept in the history;
    `models.production.v1` is published."""
    try:
        move = await registry.unpin(conn, symbol, by, body.reason if body else None)
    except RollbackRefused as exc:
        conflict(f"unpin refused: {exc}")
    return await _announce(move, forecasts, events)

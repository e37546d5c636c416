"""/v1/bulk/ingest-runs: the validation report of each published bulk ingest run (counts per
reason and per file), newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from metalcast_api.bulk import service
from metalcast_api.bulk.schemas import IngestRunRead
from metalcast_api.deps import ConnDep
from metalcast_api.errors import not_found, responses

router = APIRouter(prefix="/v1/bulk", tags=["bulk"])


@router.get(
    "/ingest-runs", response_model=list[IngestRunRead], summary="Bulk ingest runs, newest first"
)
async def ingest_runs(
    conn: ConnDep, limit: Annotated[int, Query(ge=1, le=500)] = 20
) -> list[IngestRunRead]:
    return [IngestRunRead(**row) for row in await service.runs(conn, limit)]


@router.get(
    "/ingest-runs/latest",
    response_model=IngestRunRead,
    responses=responses(404),
    summary="The newest bulk ingest run's report",
)
async def latest(conn: ConnDep) -> IngestRunRead:
    rows = await service.runs(conn, 1)
    if not rows:
        not_found("no bulk ingest run yet: run `metalcast bulk ingest DIR`")
    return IngestRunRead(**rows[0])


@router.get(
    "/ingest-runs/{run_id}",
    response_model=IngestRunRead,
    responses=responses(404),
    summary="One bulk ingest run's report",
)
async def one(
    conn: ConnDep, run_id: Annotated[str, Path(max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]
) -> IngestRunRead:
    row = await service.run(conn, run_id)
    if row is None:
        not_found(f"no bulk ingest run {run_id}")
    return IngestRunRead(**row)

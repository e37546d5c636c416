"""HTTP shapes of the bulk ingest reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class IngestRunRead(BaseModel):
    run_id: str
    data_url: str
    input: str
    engine: str
    files: int
    rows_good: int
    rows_quarantined: int
    seconds: float | None
    published_at: datetime
    report: dict[str, Any] = Field(
        description="Counts: `files`, `rows_read`, `rows_good`, `rows_quarantined`, `reasons` "
        "(reason -> rows or files), `by_file` (file -> reason -> count)"
    )

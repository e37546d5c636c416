"""HTTP schemas of the operations endpoints."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class HealthRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str


class ReadyRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"ready": True, "checks": {"database": "ok", "s3": "ok", "kafka": "ok"}},
                {
                    "ready": False,
                    "checks": {"database": "ok", "s3": "ok", "kafka": "Kafka does not answer"},
                },
            ]
        }
    )

    ready: bool
    checks: dict[str, str] = Field(description="'ok', or why the check failed")


class BackupRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "20260115T060000.123456Z",
                    "status": "complete",
                    "started_at": "2026-01-15T06:00:00Z",
                    "finished_at": "2026-01-15T06:00:09Z",
                    "duration_s": 9.1,
                    "total_rows": 120000,
                    "models": 12,
                    "total_bytes": 4200000,
                    "error": None,
                    "verify_status": "passed",
                    "verified_at": "2026-01-15T06:01:02Z",
                    "verify_duration_s": 30.5,
                    "verify_error": None,
                }
            ]
        }
    )

    id: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    total_rows: int | None
    models: int | None
    total_bytes: int | None
    error: str | None
    verify_status: str | None
    verified_at: datetime | None
    verify_duration_s: float | None
    verify_error: str | None


class FreshnessRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "symbol": "XAU",
                    "last_tick": "2026-01-15T10:59:00Z",
                    "tick_age_seconds": 74.2,
                    "last_hour": "2026-01-15T10:00:00Z",
                }
            ]
        }
    )

    symbol: str
    last_tick: datetime | None = Field(description="Newest spot USD tick in prices.ticks")
    tick_age_seconds: float | None
    last_hour: datetime | None = Field(description="Newest hour with a value in analytics")

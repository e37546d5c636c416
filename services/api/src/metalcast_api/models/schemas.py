"""HTTP schemas of the models endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from metalcast_models.registry import PointerMove, VersionInfo

VERSION_EXAMPLE: dict[str, Any] = {
    "symbol": "XAU",
    "version": 3,
    "model_version_id": 11,
    "run_id": 5,
    "family": "arima",
    "model_class": "ARIMA",
    "hyperparameters": {"order": [1, 1, 0]},
    "fitted_params": {"ar.L1": 0.21, "sigma2": 3.4},
    "metrics": {"mae": 1.7, "rmse": 2.2},
    "window_start": "2026-01-14T23:00:00Z",
    "window_end": "2026-01-15T10:00:00Z",
    "n_observations": 12,
    "artifact_uri": "s3://metalcast-models/models/XAU/3/XAUUSD.zip",
    "sha256": "9f2c…",
    "size_bytes": 20480,
    "trained_at": "2026-01-15T10:05:12Z",
    "in_production": True,
}


class VersionRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [VERSION_EXAMPLE]})

    symbol: str
    version: int
    model_version_id: int
    run_id: int
    family: str
    model_class: str
    hyperparameters: dict[str, Any]
    fitted_params: dict[str, Any]
    metrics: dict[str, Any]
    window_start: datetime = Field(description="First hour of the training window")
    window_end: datetime = Field(description="Last hour trained on: the model's cutoff")
    n_observations: int
    artifact_uri: str
    sha256: str
    size_bytes: int
    trained_at: datetime
    in_production: bool

    @classmethod
    def of(cls, info: VersionInfo) -> VersionRead:
        return cls(
            symbol=info.symbol,
            version=info.version,
            model_version_id=info.id,
            run_id=info.run_id,
            family=info.family,
            model_class=info.model_class,
            hyperparameters=info.hyperparameters,
            fitted_params=info.fitted_params,
            metrics=info.metrics,
            window_start=info.window_start,
            window_end=info.window_end,
            n_observations=info.n_observations,
            artifact_uri=info.artifact_uri,
            sha256=info.sha256,
            size_bytes=info.size_bytes,
            trained_at=info.created_at,
            in_production=info.in_production,
        )


class ProductionRead(VersionRead):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {**VERSION_EXAMPLE, "promoted_at": "2026-01-15T10:05:13Z", "promoted_by": "trainer"}
            ]
        }
    )

    promoted_at: datetime | None = Field(description="When the pointer last moved")
    promoted_by: str | None


class TrainingResultRead(BaseModel):
    symbol: str
    status: str = Field(description="promoted | kept | failed")
    reason: str | None
    version: int | None


class TrainingRunRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 5,
                    "trigger": "batch-loaded",
                    "status": "partial",
                    "error": None,
                    "family": "arima",
                    "x_size": 12,
                    "y_size": 1,
                    "window_start": "2026-01-14T23:00:00Z",
                    "window_end": "2026-01-15T10:00:00Z",
                    "started_at": "2026-01-15T10:05:01Z",
                    "finished_at": "2026-01-15T10:05:12Z",
                    "duration_s": 11.0,
                    "results": [
                        {"symbol": "XAU", "status": "promoted", "reason": None, "version": 3},
                        {
                            "symbol": "XPD",
                            "status": "failed",
                            "reason": "too few rows",
                            "version": None,
                        },
                    ],
                }
            ]
        }
    )

    id: int
    trigger: str
    status: str = Field(description="running | succeeded | partial | failed")
    error: str | None
    family: str
    x_size: int
    y_size: int
    window_start: datetime | None
    window_end: datetime | None
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    results: list[TrainingResultRead]


class RollbackRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"to_version": 2}, {}]}
    )

    to_version: int | None = Field(
        default=None, ge=1, le=2_147_483_647, description="Default: the version before"
    )


class PointerMoveRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "symbol": "XAU",
                    "from_version": 3,
                    "to_version": 2,
                    "action": "rollback",
                    "changed_by": "api",
                    "changed_at": "2026-01-15T11:00:00Z",
                }
            ]
        }
    )

    symbol: str
    from_version: int | None
    to_version: int
    action: str
    changed_by: str
    changed_at: datetime

    @classmethod
    def of(cls, move: PointerMove) -> PointerMoveRead:
        return cls(
            symbol=move.symbol,
            from_version=move.from_version,
            to_version=move.to_version,
            action=move.action,
            changed_by=move.changed_by,
            changed_at=move.changed_at,
        )


class ArtifactUrlRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "http://127.0.0.1:59000/metalcast-models/models/XAU/3/XAUUSD.zip?X-Amz-…",
                    "expires_at": "2026-01-15T11:05:00Z",
                    "sha256": "9f2c…",
                    "size_bytes": 20480,
                }
            ]
        }
    )

    url: str
    expires_at: datetime
    sha256: str
    size_bytes: int

"""HTTP schemas of the models endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from metalcast_models.backtest import INTERVAL_METHOD
from metalcast_models.registry import PointerMove, VersionInfo

METHOD = INTERVAL_METHOD
SUMMARY_EXAMPLE: dict[str, Any] = {
    "mase": 1.057,
    "mae_ratio": 0.94,
    "mae": 2.56,
    "rmse": 3.23,
    "bias": -0.08,
    "coverage_80": 0.81,
    "coverage_95": 0.94,
    "coverage_error": 0.01,
}
STEP_EXAMPLE: dict[str, Any] = {
    "step": 1,
    "n": 60,
    "mae": 2.56,
    "rmse": 3.23,
    "mase": 1.057,
    "mae_ratio": 0.94,
    "naive_mae": 2.72,
    "bias": -0.08,
    "coverage_80": 0.81,
    "coverage_95": 0.94,
    "winkler_80": 9.8,
    "winkler_95": 14.1,
    "scored_80": 36,
    "scored_95": 36,
    "raw_coverage_80": 0.72,
    "raw_coverage_95": 0.89,
}
CALIBRATION_EXAMPLE: dict[str, Any] = {
    "method": METHOD,
    "steps": 24,
    "q80": [1.69, 2.09, "…"],
    "q95": [2.97, 3.08, "…"],
    "coverage_80": 0.81,
    "coverage_95": 0.94,
    "scale": 2.43,
}
CANDIDATE_EXAMPLE: dict[str, Any] = {
    "name": "arima",
    "family": "arima",
    "hyperparameters": {"order": [1, 1, 0], "with_intercept": True},
    "x_size": 12,
    "key": "558f7fdb10381396",
}
BACKTEST_EXAMPLE: dict[str, Any] = {
    "candidate": CANDIDATE_EXAMPLE,
    "origins": 60,
    "first_origin": "2026-01-12T22:00:00Z",
    "last_origin": "2026-01-15T09:00:00Z",
    "failures": 0,
    "steps": [STEP_EXAMPLE, "…"],
    "summary": SUMMARY_EXAMPLE,
    "calibration": {k: v for k, v in CALIBRATION_EXAMPLE.items() if k != "scale"},
}
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
    "window_hours": 12,
    "n_observations": 12,
    "artifact_uri": "s3://metalcast-models/models/XAU/3/XAUUSD.zip",
    "sha256": "9f2c…",
    "size_bytes": 20480,
    "trained_at": "2026-01-15T10:05:12Z",
    "in_production": True,
    "ever_production": True,
    "candidate": "arima",
    "candidate_key": "558f7fdb10381396",
    "window_hash": "7a9ea144a40c870c",
    "backtest": BACKTEST_EXAMPLE,
    "calibration": CALIBRATION_EXAMPLE,
    "decision": "challenger arima MASE 1.057 beats champion naive 1.092 by the margin",
    "deleted_at": None,
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
    metrics: dict[str, Any] = Field(description="In-sample figures of the fit")
    window_start: datetime = Field(description="First hour of the training window")
    window_end: datetime = Field(description="Last hour trained on: the model's cutoff")
    window_hours: int | None = Field(
        description="Hours the training window spans, its first and last hour both counted "
        "(more than `n_observations` when hours without a price were skipped: the window is "
        "the last `n_observations` observed values); null for versions made before that"
    )
    n_observations: int
    artifact_uri: str
    sha256: str
    size_bytes: int
    trained_at: datetime
    in_production: bool
    ever_production: bool = Field(description="Whether the pointer ever named this version")
    candidate: str | None = Field(
        description="The candidate configuration fitted (name); null before backtests"
    )
    candidate_key: str | None = Field(description="Hash of family, hyperparameters and x_size")
    window_hash: str | None = Field(description="Hash of the window's values")
    backtest: dict[str, Any] = Field(
        description="The rolling-origin backtest of this configuration in the run that made "
        "it: `candidate`, `origins`, `first_origin`, `last_origin`, `failures`, `steps` "
        "(per horizon step: mae, rmse, mase, mae_ratio (vs the naive last value), bias, "
        "coverage_80/95 of the calibrated intervals, raw_coverage_80/95 of the model's own, "
        "winkler_80/95), `summary` (the figures the decision used) and `calibration`. "
        "`{}` for versions made before backtests"
    )
    calibration: dict[str, Any] = Field(
        description="How forecasts of this version get their intervals: `method`, "
        "`q80`/`q95` (per step, in units of `scale`), `scale` (the window's mean absolute "
        "hourly change), `coverage_80`/`coverage_95` measured out of sample in the "
        "backtest. `{}`: not calibrated, forecasts use the model's own intervals"
    )
    decision: str | None = Field(description="Why this version was or was not promoted")
    deleted_at: datetime | None = Field(
        description="When retention deleted its file (a version that never served production)"
    )

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
            window_hours=info.window_hours,
            n_observations=info.n_observations,
            artifact_uri=info.artifact_uri,
            sha256=info.sha256,
            size_bytes=info.size_bytes,
            trained_at=info.created_at,
            in_production=info.in_production,
            ever_production=info.ever_production,
            candidate=info.candidate,
            candidate_key=info.candidate_key,
            window_hash=info.window_hash,
            backtest=info.backtest,
            calibration=info.calibration,
            decision=info.decision,
            deleted_at=info.deleted_at,
        )


class ProductionRead(VersionRead):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **VERSION_EXAMPLE,
                    "promoted_at": "2026-01-15T10:05:13Z",
                    "promoted_by": "trainer",
                    "pinned": False,
                    "pinned_at": None,
                    "pinned_by": None,
                    "pin_reason": None,
                },
                {
                    **VERSION_EXAMPLE,
                    "version": 2,
                    "in_production": True,
                    "promoted_at": "2026-01-15T11:00:00Z",
                    "promoted_by": "api",
                    "pinned": True,
                    "pinned_at": "2026-01-15T11:00:00Z",
                    "pinned_by": "api",
                    "pin_reason": "v3 overshoots after the CPI print",
                },
            ]
        }
    )

    promoted_at: datetime | None = Field(description="When the pointer last changed")
    promoted_by: str | None
    pinned: bool = Field(
        description="A rollback pinned the pointer: the trainer records new versions but "
        "does not promote them until `POST /v1/models/{symbol}/unpin`"
    )
    pinned_at: datetime | None = None
    pinned_by: str | None = None
    pin_reason: str | None = None


class TrainingResultRead(BaseModel):
    symbol: str
    status: str = Field(description="promoted | kept | pinned | unchanged | failed")
    reason: str | None
    version: int | None = Field(description="The version recorded or reused for this metal")
    window_start: datetime | None = None
    window_end: datetime | None = None
    window_hours: int | None = None
    decision: dict[str, Any] = Field(
        default_factory=dict,
        description="Champion/challenger: `action` (first | refit | promote | keep | pinned), "
        "`chosen`, `best`, `reason`, `mase` per candidate",
    )


class TrainingRunRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 5,
                    "trigger": "batch-loaded",
                    "status": "partial",
                    "error": None,
                    "family": "arima,naive",
                    "candidates": [CANDIDATE_EXAMPLE],
                    "x_size": 12,
                    "y_size": 1,
                    "window_start": "2026-01-14T23:00:00Z",
                    "window_end": "2026-01-15T10:00:00Z",
                    "started_at": "2026-01-15T10:05:01Z",
                    "finished_at": "2026-01-15T10:05:12Z",
                    "duration_s": 11.0,
                    "results": [
                        {
                            "symbol": "XAU",
                            "status": "promoted",
                            "reason": "challenger arima MASE 1.057 beats champion naive 1.092 "
                            "by the margin",
                            "version": 3,
                            "window_start": "2026-01-14T23:00:00Z",
                            "window_end": "2026-01-15T10:00:00Z",
                            "window_hours": 12,
                            "decision": {
                                "action": "promote",
                                "chosen": "arima",
                                "best": "arima",
                                "reason": "challenger arima MASE 1.057 beats champion naive "
                                "1.092 by the margin",
                                "mase": {"arima": 1.057, "naive": 1.092},
                            },
                        },
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
    status: str = Field(description="running | succeeded | partial | failed | unchanged")
    error: str | None
    family: str = Field(description="The candidates' names, comma-separated")
    candidates: list[dict[str, Any]] = Field(
        default_factory=list, description="The candidate configurations this run backtested"
    )
    x_size: int
    y_size: int
    window_start: datetime | None
    window_end: datetime | None
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    results: list[TrainingResultRead]


Reason = Annotated[
    str | None,
    Field(
        max_length=500,
        description="Why (kept in the pointer's history and sent with models.production.v1)",
    ),
]


class RollbackRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"to_version": 2, "reason": "v3 overshoots after the CPI print"}, {}]
        },
    )

    to_version: int | None = Field(
        default=None, ge=1, le=2_147_483_647, description="Default: the version before"
    )
    reason: Reason = None


class UnpinRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "v4 fixes the overshoot"}, {}]},
    )

    reason: Reason = None


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
                    "pinned": True,
                    "reason": "v3 overshoots after the CPI print",
                    "published": True,
                }
            ]
        }
    )

    symbol: str
    from_version: int | None
    to_version: int
    action: str = Field(description="rollback | unpin")
    changed_by: str
    changed_at: datetime
    pinned: bool = Field(description="Whether the pointer is pinned after this change")
    reason: str | None
    published: bool = Field(
        description="Whether models.production.v1 was published (false: Kafka did not take "
        "it in time; the change itself is done, other API processes see it within "
        "`pointer_ttl_s`)"
    )

    @classmethod
    def of(cls, move: PointerMove, published: bool) -> PointerMoveRead:
        return cls(
            symbol=move.symbol,
            from_version=move.from_version,
            to_version=move.to_version,
            action=move.action,
            changed_by=move.changed_by,
            changed_at=move.changed_at,
            pinned=move.pinned,
            reason=move.reason,
            published=published,
        )


class PointerEventRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "symbol": "XAU",
                    "action": "rollback",
                    "from_version": 3,
                    "to_version": 2,
                    "pinned": True,
                    "changed_by": "api",
                    "changed_at": "2026-01-15T11:00:00Z",
                    "reason": "v3 overshoots after the CPI print",
                },
                {
                    "symbol": "XAU",
                    "action": "promote",
                    "from_version": 2,
                    "to_version": 3,
                    "pinned": False,
                    "changed_by": "trainer",
                    "changed_at": "2026-01-15T10:05:13Z",
                    "reason": "run 5: challenger arima MASE 1.057 beats champion naive 1.092 "
                    "by the margin",
                },
            ]
        }
    )

    symbol: str
    action: str = Field(description="promote | rollback | unpin")
    from_version: int | None = Field(description="null for the first promotion")
    to_version: int = Field(description="For `unpin`: the version that stays in production")
    pinned: bool = Field(description="Whether the pointer was pinned after this change")
    changed_by: str
    changed_at: datetime
    reason: str | None


class BacktestSummaryRead(BaseModel):
    """The stored summary: these figures, and any the trainer adds, passed through."""

    model_config = ConfigDict(extra="allow")

    mase: float | None = Field(default=None, description="Mean absolute scaled error")
    mae_ratio: float | None = Field(
        default=None, description="MAE over the naive last value's MAE (below 1: better)"
    )
    mae: float | None = None
    rmse: float | None = None
    bias: float | None = Field(default=None, description="Mean of point - actual")
    coverage_80: float | None = Field(
        default=None, description="Share of outcomes inside the calibrated 80% interval"
    )
    coverage_95: float | None = None
    coverage_error: float | None = Field(
        default=None, description="The larger distance of the coverages from nominal"
    )


class CandidateBacktestRead(BaseModel):
    name: str
    candidate_key: str
    family: str | None
    hyperparameters: dict[str, Any]
    x_size: int | None
    in_production: bool = Field(
        description="This configuration is the production version's (scored on the same "
        "origins as every candidate)"
    )
    origins: int | None = Field(description="Forecast origins scored")
    first_origin: datetime | None
    last_origin: datetime | None
    failures: int | None = Field(description="Origins where the fit failed (scored as naive)")
    summary: BacktestSummaryRead = Field(description="The figures the decision used")
    steps: list[dict[str, Any]] = Field(description="Per horizon step (see VersionRead)")
    calibration: dict[str, Any]

    @classmethod
    def of(cls, stored: dict[str, Any], production_key: str | None) -> CandidateBacktestRead:
        """From an ``ml.backtests`` row: its key and name, and the stored Score JSON."""
        described = stored.get("candidate") or {}
        return cls(
            name=stored["name"],
            candidate_key=stored["candidate_key"],
            family=described.get("family"),
            hyperparameters=described.get("hyperparameters") or {},
            x_size=described.get("x_size"),
            in_production=production_key is not None and production_key == stored["candidate_key"],
            origins=stored.get("origins"),
            first_origin=stored.get("first_origin"),
            last_origin=stored.get("last_origin"),
            failures=stored.get("failures"),
            summary=BacktestSummaryRead.model_validate(stored.get("summary") or {}),
            steps=stored.get("steps") or [],
            calibration=stored.get("calibration") or {},
        )


class ProductionRef(BaseModel):
    version: int
    candidate: str | None
    candidate_key: str | None
    pinned: bool


class BacktestRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "symbol": "XAU",
                    "run_id": 5,
                    "run_status": "succeeded",
                    "trigger": "batch-loaded",
                    "started_at": "2026-01-15T10:05:01Z",
                    "finished_at": "2026-01-15T10:05:12Z",
                    "result": "promoted",
                    "version": 3,
                    "window_start": "2026-01-14T23:00:00Z",
                    "window_end": "2026-01-15T10:00:00Z",
                    "window_hours": 12,
                    "decision": {
                        "action": "promote",
                        "chosen": "arima",
                        "best": "arima",
                        "reason": "challenger arima MASE 1.057 beats champion naive 1.092 by "
                        "the margin",
                        "mase": {"arima": 1.057, "naive": 1.092},
                    },
                    "production": {
                        "version": 3,
                        "candidate": "arima",
                        "candidate_key": "558f7fdb10381396",
                        "pinned": False,
                    },
                    "interval_method": METHOD,
                    "candidates": [
                        {
                            "name": "arima",
                            "candidate_key": "558f7fdb10381396",
                            "family": "arima",
                            "hyperparameters": {"order": [1, 1, 0], "with_intercept": True},
                            "x_size": 12,
                            "in_production": True,
                            "origins": 60,
                            "first_origin": "2026-01-12T22:00:00Z",
                            "last_origin": "2026-01-15T09:00:00Z",
                            "failures": 0,
                            "summary": SUMMARY_EXAMPLE,
                            "steps": [STEP_EXAMPLE],
                            "calibration": BACKTEST_EXAMPLE["calibration"],
                        }
                    ],
                }
            ]
        }
    )

    symbol: str
    run_id: int
    run_status: str
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    result: str | None = Field(
        description="What the run did for this metal: promoted | kept | pinned | unchanged | failed"
    )
    version: int | None = Field(description="The version the run recorded or reused")
    window_start: datetime | None
    window_end: datetime | None
    window_hours: int | None
    decision: dict[str, Any] = Field(description="Champion/challenger, as the run recorded it")
    production: ProductionRef | None = Field(description="The version in production now")
    interval_method: str
    candidates: list[CandidateBacktestRead] = Field(
        description="Every configuration backtested, best MASE first"
    )


class ArtifactUrlRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "http://127.0.0.1:29000/metalcast-models/models/XAU/3/XAUUSD.zip?X-Amz-…",
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

"""The trainer's one settings object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from metalcast_core import (
    INSTRUMENT_TRAINER_GROUP,
    METALS,
    TRAINER_GROUP,
    ModelConfig,
    ServiceSettings,
)
from metalcast_models import FAMILIES
from metalcast_models.backtest import Candidate, Rules, make_candidate
from metalcast_models.valuation import DEFAULT_GRID, ValuationConfig


class CandidateSpec(BaseModel):
    """One candidate: a family (``metalcast_models.FAMILIES``) and overrides of its
    hyperparameters; ``name`` defaults to the family (two of one family need names)."""

    family: str
    name: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)

    @field_validator("family")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in FAMILIES:
            raise ValueError(f"unknown model family {value!r}; known: {', '.join(FAMILIES)}")
        return value

    @property
    def label(self) -> str:
        return self.name or self.family


def _default_candidates() -> list[CandidateSpec]:
    # The data scientists' ARIMA(1,1,0)+c first, then the simple challengers.
    return [CandidateSpec(family=f) for f in ("arima", "naive", "drift", "theta", "ses")]


class ValuationSection(BaseModel):
    """The gold valuation model (docs/valuation.md): retrained when a load touches gold or a
    macro series; its candidates are naive, ARIMA and LightGBM on daily gold."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    gold_symbol: str = "XAU"
    x_size: int = Field(default=60, ge=3)  # naive/ARIMA window, in daily closes
    backtest_origins: int = Field(default=250, ge=10)
    refit_every: int = Field(default=21, ge=1)  # LightGBM refits in the backtest
    cv_folds: int = Field(default=4, ge=2)
    min_train: int = Field(default=250, ge=30)  # rows before the first CV fold
    grid: dict[str, list[Any]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_GRID.items()}
    )

    def config(self) -> ValuationConfig:
        return ValuationConfig(
            x_size=self.x_size,
            origins=self.backtest_origins,
            refit_every=self.refit_every,
            folds=self.cv_folds,
            min_train=self.min_train,
            grid=self.grid,
        )


class TrainerSection(BaseModel):
    # A misspelt or retired setting (FAMILY, HYPERPARAMETERS: now CANDIDATES) is an error.
    model_config = ConfigDict(extra="forbid")

    group_id: str = TRAINER_GROUP
    # Champion/challenger: every candidate is backtested each run, e.g.
    # METALCAST_TRAINER__CANDIDATES='[{"family": "arima", "hyperparameters": {"order": [2,1,0]}},
    #                                  "naive", "theta"]'
    candidates: list[CandidateSpec] = Field(default_factory=_default_candidates)
    tickers: list[str] = Field(default_factory=lambda: [m.ticker for m in METALS])
    x_size: int = Field(default=12, ge=3)
    y_size: int = Field(default=1, ge=1)
    # Rolling-origin backtest: how many origins per metal, how many steps from each.
    backtest_origins: int = Field(default=168, ge=10)
    backtest_horizon: int = Field(default=24, ge=1)
    # Conformal calibration: fewest earlier outcomes before an origin's interval is scored.
    min_calibration: int = Field(default=24, ge=5)
    # Promotion: a challenger's MASE must be this much lower (relative) than the champion's,
    # and its interval coverage no further from nominal (or within coverage_tolerance).
    promotion_margin: float = Field(default=0.01, ge=0, lt=1)
    coverage_tolerance: float = Field(default=0.03, ge=0, le=1)
    # ... and significantly lower: a one-sided Diebold-Mariano test at this level,
    # Bonferroni-corrected over the challengers (0: no test).
    promotion_significance: float = Field(default=0.05, ge=0, lt=1)
    # The candidate preferred unless another beats it by the margin (None: no baseline).
    baseline: str | None = "naive"
    # Versions that never served production are deleted after this many hours (0: never).
    retention_hours: float = Field(default=168.0, ge=0)
    # After an event, wait this long for more before training (a burst trains once).
    coalesce_s: float = Field(default=0.2, ge=0)
    work_dir: Path = Path("/tmp/metalcast-trainer")
    # GET /metrics and /healthz (metalcast_trainer.observe) on this address; port 0: none.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9102, ge=0, le=65535)
    # /healthz fails when a run has lasted this long (stuck), when the loop has not asked
    # Kafka for events for stall_after_s outside a run, or after this many failed runs in a row.
    max_run_s: float = Field(default=1800.0, gt=0)
    stall_after_s: float = Field(default=60.0, gt=0)
    failed_runs_unhealthy: int = Field(default=3, ge=1)
    models_prefix: str = "models/"
    # Catalogued instruments (other than the metals). With dispatch on, the instance that
    # reads a batch-loaded event publishes one pipeline.train-requested.v1 event per touched
    # instrument (key: symbol), and every instance trains the instruments of its share of
    # that topic's partitions (group instrument_group_id); off: trained inline in the run.
    dispatch_instruments: bool = True
    instrument_group_id: str = INSTRUMENT_TRAINER_GROUP
    # Backtests of instruments run in a process pool of this many workers (one BLAS thread
    # each); 0: in threads of the trainer's own process.
    workers: int = Field(default=2, ge=0, le=64)
    # Instruments go to the pool and to the database in batches of at most this many
    # (metalcast_trainer.instruments); this many batches are in flight at once, so that one
    # batch's database and S3 work overlaps the pool's work on the next.
    instrument_batch: int = Field(default=50, ge=1, le=1000)
    instrument_batches: int = Field(default=4, ge=1, le=64)
    valuation: ValuationSection = Field(default_factory=ValuationSection)

    @field_validator("candidates", mode="before")
    @classmethod
    def _names_are_candidates(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"family": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _unique_and_valid(self) -> TrainerSection:
        if not self.candidates:
            raise ValueError("at least one candidate is needed")
        labels = [c.label for c in self.candidates]
        if len(set(labels)) != len(labels):
            raise ValueError(f"candidate names must be unique: {labels}")
        for spec in self.candidates:
            FAMILIES[spec.family].resolve(spec.hyperparameters)  # unknown names: ValueError
        if self.baseline is not None and self.baseline not in labels:
            raise ValueError(f"baseline {self.baseline!r} is not a candidate ({labels})")
        return self

    @property
    def select_steps(self) -> int:
        """The forecast steps the decision scores: ``y_size``, within the backtest horizon."""
        return min(self.y_size, self.backtest_horizon)

    def build_candidates(self) -> list[Candidate]:
        """The configured candidates with their families' defaults merged in."""
        return [
            make_candidate(c.family, self.x_size, c.hyperparameters, c.label)
            for c in self.candidates
        ]

    def rules(self) -> Rules:
        """The champion/challenger rules these settings ask for."""
        return Rules(
            margin=self.promotion_margin,
            coverage_tolerance=self.coverage_tolerance,
            baseline=self.baseline,
            significance=self.promotion_significance,
            lag=self.select_steps - 1,
        )


class TrainerSettings(ServiceSettings):
    trainer: TrainerSection = TrainerSection()


def instrument_plan(
    cfg: TrainerSection, model: ModelConfig
) -> tuple[int, list[Candidate], Rules, TrainerSection]:
    """An instrument's window size, candidates and rules from its catalogue entry; the
    backtest settings (origins, horizon, calibration, promotion margins) are the trainer's.
    The baseline is ``naive`` when it is among the candidates."""
    specs = [
        CandidateSpec(family=c) if isinstance(c, str) else CandidateSpec.model_validate(c)
        for c in model.candidates
    ]
    labels = [s.label for s in specs]
    section = cfg.model_copy(
        update={
            "x_size": model.x_size,
            "candidates": specs,
            "baseline": cfg.baseline if cfg.baseline in labels else None,
        }
    )
    candidates = [make_candidate(s.family, model.x_size, s.hyperparameters, s.label) for s in specs]
    return model.x_size, candidates, section.rules(), section

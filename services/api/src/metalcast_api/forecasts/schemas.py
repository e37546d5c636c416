"""HTTP schemas of the forecasts endpoint."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from metalcast_api.resources.forecasts import ForecastStep
from metalcast_models.backtest import INTERVAL_METHOD

__all__ = ["ForecastModel", "ForecastRead", "ForecastStep"]


class ForecastModel(BaseModel):
    model_version_id: int
    version: int
    family: str
    candidate: str | None = Field(description="The candidate configuration (null before backtests)")
    trained_at: datetime
    window_start: datetime
    window_end: datetime


class ForecastRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "symbol": "XAU",
                    "model": {
                        "model_version_id": 11,
                        "version": 3,
                        "family": "arima",
                        "candidate": "arima",
                        "trained_at": "2026-01-15T10:05:12Z",
                        "window_start": "2026-01-14T23:00:00Z",
                        "window_end": "2026-01-15T10:00:00Z",
                    },
                    "cutoff": "2026-01-15T10:00:00Z",
                    "last_observation": "2026-01-15T10:00:00Z",
                    "stale_hours": 0,
                    "until": None,
                    "horizon": 2,
                    "cached": True,
                    "generated_at": "2026-01-15T10:20:00Z",
                    "interval_method": INTERVAL_METHOD,
                    "interval_coverage": {"80": 0.81, "95": 0.94},
                    "steps": [
                        {
                            "ts": "2026-01-15T11:00:00Z",
                            "point": 2651.2,
                            "lower_80": 2647.9,
                            "upper_80": 2654.5,
                            "lower_95": 2646.1,
                            "upper_95": 2656.3,
                        },
                        {
                            "ts": "2026-01-15T12:00:00Z",
                            "point": 2651.6,
                            "lower_80": 2646.9,
                            "upper_80": 2656.3,
                            "lower_95": 2644.4,
                            "upper_95": 2658.8,
                        },
                    ],
                }
            ]
        }
    )

    symbol: str
    model: ForecastModel = Field(description="The production version that produced this")
    cutoff: datetime = Field(
        description="The last hour the model was trained on; steps start one hour later"
    )
    last_observation: datetime | None = Field(
        description="Newest hour with a value for this metal in analytics.metal_prices"
    )
    stale_hours: int = Field(
        description="Hours of data newer than the cutoff (0: the model has seen everything)"
    )
    until: datetime | None = Field(description="The target asked for, if `until` was used")
    horizon: int = Field(description="Number of steps")
    cached: bool = Field(description="Whether the model was already in memory")
    generated_at: datetime
    interval_method: str = Field(
        description="How the 80% and 95% bounds are made. Calibrated versions: "
        f"'{INTERVAL_METHOD}' (the model's point, bounds point ± q_h · scale, q_h from the "
        "backtest's errors at step h; past the calibrated steps the last q widens with "
        "sqrt(h / H)). Versions without a calibration: 'model (uncalibrated)', the model's "
        "own intervals",
        examples=[INTERVAL_METHOD, "model (uncalibrated)"],
    )
    interval_coverage: dict[str, float | None] | None = Field(
        description="Share of outcomes the calibrated 80% and 95% intervals covered in the "
        "backtest, out of sample (keys '80' and '95'); null when uncalibrated",
        examples=[{"80": 0.81, "95": 0.94}],
    )
    steps: list[ForecastStep]
    cadence: str = Field(
        default="hourly",
        description="The steps' cadence: hourly (metals, crypto) or daily (bars: stocks and "
        "ETFs step in NYSE trading days, other daily instruments in calendar days)",
    )

"""HTTP shapes of the volume endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, Field

VolMovingAvg = Annotated[
    float,
    Query(
        ge=0,
        allow_inf_nan=False,
        description="30-day rolling mean of the daily volume (shares), finite, >= 0",
        examples=[12345],
    ),
]
AdjCloseRollingMed = Annotated[
    float,
    Query(
        ge=0,
        allow_inf_nan=False,
        description="30-day rolling median of the adjusted close (USD), finite, >= 0",
        examples=[25],
    ),
]


class VolumeInputs(BaseModel):
    vol_moving_avg: float
    adj_close_rolling_med: float


class VolumePredictionRead(BaseModel):
    volume: int = Field(description="Predicted trading volume, whole shares", examples=[10350])
    model_version: int = Field(description="Version of the VOLUME model in the registry")
    model_version_id: int
    inputs: VolumeInputs

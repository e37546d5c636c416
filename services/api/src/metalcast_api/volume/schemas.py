"""HTTP shapes of the volume endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, Field

# Upper bounds: beyond them the input is not a market's (the busiest US shares trade ~1e9 a
# day; the bulk pipeline quarantines prices above 1e7) and the product could overflow.
MAX_VOLUME = 1e13
MAX_PRICE = 1e7

VolMovingAvg = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_VOLUME,
        allow_inf_nan=False,
        description="30-day rolling mean of the daily volume (shares), finite, 0..1e13",
        examples=[12345],
    ),
]
AdjCloseRollingMed = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_PRICE,
        allow_inf_nan=False,
        description="30-day rolling median of the adjusted close (USD), finite, 0..1e7",
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

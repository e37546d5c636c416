"""HTTP schemas of the instruments endpoints."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field


class InstrumentRead(BaseModel):
    symbol: str
    name: str
    kind: str = Field(description="metal, crypto, equity, etf, fx or macro")
    currency: str
    unit: str
    cadence: str = Field(description="hourly (ticks) or daily (bars)")
    providers: dict[str, str] = Field(description="provider -> its own id for the instrument")
    model: dict[str, Any] | None = Field(description="x_size and candidates; null: not trained")


class HourlyPoint(BaseModel):
    ts: datetime
    price: float


class DailyBar(BaseModel):
    date: date
    open: float
    high: float
    low: float
    close: float
    volume: float | None
    source: str


class InstrumentHistoryRead(BaseModel):
    symbol: str
    cadence: str
    currency: str
    start: datetime
    end: datetime
    hourly: list[HourlyPoint] | None = Field(
        default=None, description="cadence=hourly: the last price of each UTC hour"
    )
    daily: list[DailyBar] | None = Field(
        default=None, description="cadence=daily: one bar per day (bars, or the day's ticks)"
    )

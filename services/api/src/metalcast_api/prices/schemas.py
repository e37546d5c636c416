"""HTTP schemas of the prices endpoints (apart from the event schemas in metalcast_core)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

T0 = "2026-01-15T10:00:00Z"


class LatestPriceRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "symbol": "XAU",
                    "name": "Gold",
                    "price": 2651.37,
                    "currency": "USD",
                    "observed_at": "2026-01-15T10:59:00Z",
                    "age_seconds": 74.2,
                    "source": "gold-api",
                }
            ]
        }
    )

    symbol: str
    name: str | None = Field(description="The metal's name; null for other instruments")
    price: float = Field(description="USD per troy ounce for metals")
    currency: str
    observed_at: datetime = Field(description="When the provider says the price held (UTC)")
    age_seconds: float = Field(description="Seconds between observed_at and this answer")
    source: str = Field(description="The provider, e.g. gold-api, simulated")


class PricePoint(BaseModel):
    ts: datetime = Field(description="Start of the UTC hour")
    price: float


class HistoryRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "symbol": "XAU",
                    "start": "2026-01-15T08:00:00Z",
                    "end": T0,
                    "points": [
                        {"ts": "2026-01-15T08:00:00Z", "price": 2648.1},
                        {"ts": "2026-01-15T09:00:00Z", "price": 2650.4},
                    ],
                }
            ]
        }
    )

    symbol: str
    start: datetime = Field(description="Range start (included)")
    end: datetime = Field(description="Range end (excluded)")
    points: list[PricePoint] = Field(
        description="One per hour that has a value (the hourly rule: the hour's last spot tick)"
    )


class AnalyticsRow(BaseModel):
    ts: datetime
    xau: float | None
    xag: float | None
    xpt: float | None
    xpd: float | None


class AnalyticsRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "start": "2026-01-15T09:00:00Z",
                    "end": T0,
                    "rows": [
                        {
                            "ts": "2026-01-15T09:00:00Z",
                            "xau": 2650.4,
                            "xag": 31.02,
                            "xpt": 961.5,
                            "xpd": None,
                        }
                    ],
                }
            ]
        }
    )

    start: datetime
    end: datetime
    rows: list[AnalyticsRow]


class TrainingWindowRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "size": 1,
                    "first": "2026-01-15T09:00:00Z",
                    "last": "2026-01-15T09:00:00Z",
                    "rows": [
                        {
                            "ts": "2026-01-15T09:00:00Z",
                            "xau": 2650.4,
                            "xag": 31.02,
                            "xpt": 961.5,
                            "xpd": 1003.2,
                        }
                    ],
                }
            ]
        }
    )

    size: int = Field(description="Rows in the window (the view holds at most twelve)")
    first: datetime | None
    last: datetime | None
    rows: list[AnalyticsRow]

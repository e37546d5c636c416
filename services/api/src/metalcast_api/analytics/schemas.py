"""HTTP schemas of the analytics endpoints (one row type per analysis view)."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field


class MonthlyRow(BaseModel):
    """analytics.monthly_summary: what did it average, and how far did it range, each month?"""

    symbol: str
    month: date
    days: int
    avg_close: float
    low: float
    high: float
    range: float
    range_pct_of_avg: float | None
    first_close: float
    last_close: float


class MoveRow(BaseModel):
    """analytics.drawdowns / analytics.rallies: one episode from a peak (or a low)."""

    symbol: str
    start_date: date = Field(description="The peak (drawdowns) or the low (rallies)")
    start_close: float
    end_date: date = Field(description="The trough (drawdowns) or the high (rallies)")
    end_close: float
    change: float = Field(description="end_close / start_close - 1")
    days: int


class ReturnRow(BaseModel):
    """analytics.daily_returns: the day-over-day move and the 30-observation volatility."""

    symbol: str
    date: date
    close: float
    previous_close: float | None
    simple_return: float | None
    log_return: float | None
    volatility_30: float | None = Field(description="Std. dev. of the last 30 log returns")
    volatility_30_annualised: float | None = Field(
        description="volatility_30 x sqrt(365) for crypto, x sqrt(252) otherwise"
    )


class CorrelationRow(BaseModel):
    """analytics.return_correlations: do two instruments move together?"""

    symbol_a: str
    symbol_b: str
    days: int = Field(description="Days both had a daily log return")
    correlation: float | None = Field(description="Pearson correlation of daily log returns")

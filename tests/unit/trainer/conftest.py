from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from metalcast_models import GeneratedData

TICKERS = ["XAUUSD", "XAGUSD", "XPTUSD", "XPDUSD"]
END = datetime(2025, 3, 3, 12, tzinfo=UTC)


@pytest.fixture
def good_frame() -> pd.DataFrame:
    """48 hours of generated prices for the four metals, ending at ``END``."""
    return GeneratedData(seed=7, end=END, history=36).window(TICKERS, 12)


@pytest.fixture
def hours() -> pd.DatetimeIndex:
    return pd.date_range(end=END, periods=48, freq="h", tz="UTC")

"""The column contract of every bulk dataset, in one place.

Input: the Kaggle "stock market dataset" layout: ``stocks/<SYMBOL>.csv`` and
``etfs/<SYMBOL>.csv`` with the header :data:`RAW_COLUMNS`, plus ``symbols_valid_meta.csv``
(``Symbol``, ``Security Name``, ``ETF``, ...).

Datasets (each a folder of Parquet files under its stage, see :mod:`metalcast_bulk.storage`):

- ``prices``: :data:`PRICES_SCHEMA`, one row per symbol and trading day, sorted by
  (``Symbol``, ``Date``); one symbol never spans two files.
- ``quarantine``: :data:`QUARANTINE_SCHEMA`, every rejected row (or file) with its reason.
- ``features``: :data:`FEATURES_SCHEMA`, ``prices`` keys plus the two rolling features.
"""

from __future__ import annotations

from typing import Final

import polars as pl

KINDS: Final = ("stocks", "etfs")
META_FILE: Final = "symbols_valid_meta.csv"

DATE: Final = "Date"
PRICE_COLUMNS: Final = ("Open", "High", "Low", "Close", "Adj Close")
VOLUME: Final = "Volume"
RAW_COLUMNS: Final = (DATE, *PRICE_COLUMNS, VOLUME)

SYMBOL: Final = "Symbol"
SECURITY_NAME: Final = "Security Name"
ETF: Final = "ETF"

VOL_MOVING_AVG: Final = "vol_moving_avg"
ADJ_CLOSE_ROLLING_MED: Final = "adj_close_rolling_med"
FEATURE_COLUMNS: Final = (VOL_MOVING_AVG, ADJ_CLOSE_ROLLING_MED)

# Where the row came from, kept in quarantine: file path relative to the input folder and
# 1-based line number in that file (the header is line 1).
SOURCE_FILE: Final = "file"
LINE: Final = "line"
REASON: Final = "reason"

PRICES_SCHEMA: Final = pl.Schema(
    {
        SYMBOL: pl.String(),
        SECURITY_NAME: pl.String(),
        ETF: pl.Boolean(),
        DATE: pl.String(),  # YYYY-MM-DD
        "Open": pl.Float64(),
        "High": pl.Float64(),
        "Low": pl.Float64(),
        "Close": pl.Float64(),
        "Adj Close": pl.Float64(),
        VOLUME: pl.Int64(),
    }
)

QUARANTINE_SCHEMA: Final = pl.Schema(
    {
        SYMBOL: pl.String(),
        ETF: pl.Boolean(),
        SOURCE_FILE: pl.String(),
        LINE: pl.Int64(),  # null for a problem with the whole file
        REASON: pl.String(),
        # The row's fields as they were read (null for a whole-file problem).
        **{name: pl.String() for name in RAW_COLUMNS},
    }
)

FEATURES_SCHEMA: Final = pl.Schema(
    {
        SYMBOL: pl.String(),
        ETF: pl.Boolean(),
        DATE: pl.String(),
        VOLUME: pl.Int64(),
        "Adj Close": pl.Float64(),
        VOL_MOVING_AVG: pl.Float64(),
        ADJ_CLOSE_ROLLING_MED: pl.Float64(),
    }
)

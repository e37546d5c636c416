"""Input folders in the Kaggle "stock market dataset" layout for the bulk pipeline's tests,
made from real daily prices that packages ship (test-only dependencies):

- ``bokeh_sampledata``'s ``stocks.csv.gz``: AAPL, FB, GOOG, IBM, MSFT (2000-2013), columns
  reordered into ``Date,Open,High,Low,Close,Adj Close,Volume``;
- ``arch``'s S&P 500 and NASDAQ composite CSVs (1999-2018), exactly this layout with US dates
  (``M/D/YYYY``), copied as they are into ``etfs/`` under the index-tracking tickers SPY and
  QQQ (stand-ins: they are the indices themselves).
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import pandas as pd

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"
META = {
    "AAPL": ("Apple Inc. - Common Stock", "N"),
    "FB": ("Facebook, Inc. - Class A Common Stock", "N"),
    "GOOG": ("Alphabet Inc. - Class C Capital Stock", "N"),
    "IBM": ("International Business Machines Corporation Common Stock", "N"),
    "MSFT": ("Microsoft Corporation - Common Stock", "N"),
    "SPY": ("S&P 500 index (arch.data.sp500)", "Y"),
    "QQQ": ("NASDAQ composite index (arch.data.nasdaq)", "Y"),
}


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    assert spec is not None, f"{package} is not installed"
    assert spec.origin is not None, package
    return Path(spec.origin).parent.joinpath(*parts)


def real_market_dir(root: Path) -> dict[str, int]:
    """Write the folder; returns the number of data rows per symbol."""
    (root / "stocks").mkdir(parents=True, exist_ok=True)
    (root / "etfs").mkdir(parents=True, exist_ok=True)
    rows: dict[str, int] = {}
    stocks = pd.read_csv(_package_file("bokeh_sampledata", "_data", "stocks.csv.gz"), dtype=str)
    for symbol, frame in stocks.groupby("Ticker"):
        out = frame[HEADER.split(",")]
        out.to_csv(root / "stocks" / f"{symbol}.csv", index=False)
        rows[str(symbol)] = len(out)
    for name, symbol in (("sp500", "SPY"), ("nasdaq", "QQQ")):
        data = gzip.decompress(_package_file("arch", "data", name, f"{name}.csv.gz").read_bytes())
        (root / "etfs" / f"{symbol}.csv").write_bytes(data)
        rows[symbol] = data.decode().strip().count("\n")
    lines = ["Nasdaq Traded,Symbol,Security Name,Listing Exchange,Market Category,ETF"]
    lines += [f'Y,{s},"{name}",Q,Q,{etf}' for s, (name, etf) in META.items()]
    (root / "symbols_valid_meta.csv").write_text("\n".join(lines) + "\n")
    return rows

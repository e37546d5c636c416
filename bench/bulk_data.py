"""Kaggle-shaped daily stock and ETF prices for the bulk pipeline's benchmark.

``generate(root, symbols=8000)`` writes ``root/stocks/*.csv`` and ``root/etfs/*.csv``
(``Date,Open,High,Low,Close,Adj Close,Volume``) and ``root/symbols_valid_meta.csv``, like the
Kaggle "stock market dataset": about 3,500 trading days per symbol on average (listings from
1962 to 2019, all ending 2020-04-01: ~28M rows for 8,000 symbols), weekdays only, realistic
gaps (single missing days, and a halt of weeks for 5% of symbols), prices a geometric random
walk with High >= max(Open, Close), Low <= min(Open, Close), Adj Close below Close (dividends
and splits), volumes log-normal around a per-symbol level. Then a few corrupt things the real
dump has: empty files, an HTML error page, a wrong header, and rows with absurd values
(Adj Close -2.38e21 and 1.9e19), High < Low, negative volume, duplicate dates, bad dates.
Seeded: the same arguments write the same bytes.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

START, END = "1962-01-02", "2020-04-02"
HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"


def _calendar() -> np.ndarray[Any, Any]:
    return np.arange(np.datetime64(START), np.datetime64(END), dtype="datetime64[D]")[
        np.is_busday(np.arange(np.datetime64(START), np.datetime64(END), dtype="datetime64[D]"))
    ]


def _symbol_names(n: int, rng: np.random.Generator) -> list[str]:
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        size = int(rng.choice([1, 2, 3, 4, 4, 4, 5]))
        name = "".join(rng.choice(letters, size))
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def _series(days: np.ndarray[Any, Any], rng: np.random.Generator) -> pl.DataFrame:
    n = len(days)
    keep = rng.random(n) > 0.003  # single missing days
    if rng.random() < 0.05 and n > 200:  # a halt of weeks
        at = int(rng.integers(50, n - 100))
        keep[at : at + int(rng.integers(10, 60))] = False
    days = days[keep]
    n = len(days)
    start = float(np.exp(rng.uniform(np.log(2), np.log(300))))
    ret = rng.normal(0.0003, rng.uniform(0.01, 0.04), n)
    close = start * np.exp(np.cumsum(ret))
    open_ = close * np.exp(rng.normal(0, 0.01, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.01, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.01, n)))
    factor = np.exp(-np.linspace(rng.uniform(0, 2), 0, n))  # adjustments reach back
    level = rng.uniform(8, 16)
    log_volume = level + 0.3 * np.sin(np.arange(n) / 250) + rng.normal(0, 0.5, n)
    volume = np.maximum(np.exp(log_volume).astype(np.int64), 0)
    return pl.DataFrame(
        {
            "Date": days.astype(str),
            "Open": np.round(open_, 6),
            "High": np.round(high, 6),
            "Low": np.round(low, 6),
            "Close": np.round(close, 6),
            "Adj Close": np.round(close * factor, 6),
            "Volume": volume,
        }
    )


def _corrupt_rows(frame: pl.DataFrame, rng: np.random.Generator) -> tuple[pl.DataFrame, int]:
    """Some bad rows (as strings) into a symbol's file; returns the frame and how many."""
    text = frame.cast(pl.String)
    bad = []
    for kind in rng.choice(["absurd_neg", "absurd_pos", "high_low", "neg_vol", "dup", "date"], 2):
        row = dict(text.row(int(rng.integers(0, text.height)), named=True))
        if kind == "absurd_neg":
            row["Adj Close"] = "-2.38e21"
        elif kind == "absurd_pos":
            row["Adj Close"] = "1.9e19"
        elif kind == "high_low":
            row["High"], row["Low"] = row["Low"], str(float(row["High"]) * 2)
        elif kind == "neg_vol":
            row["Volume"] = "-100"
        elif kind == "date":
            row["Date"] = "2019-02-30"
        bad.append(row)
    return pl.concat([text, pl.DataFrame(bad, schema=text.schema)]), len(bad)


def generate(root: Path, symbols: int = 8000, seed: int = 11, workers: int = 2) -> dict[str, Any]:
    """Write the folder (skipped when ``root/generated.json`` says it has these arguments)."""
    marker = root / "generated.json"
    wanted = {"symbols": symbols, "seed": seed, "version": 1}
    if marker.is_file():
        done = json.loads(marker.read_text())
        if {k: done.get(k) for k in wanted} == wanted:
            return dict(done)
    (root / "stocks").mkdir(parents=True, exist_ok=True)
    (root / "etfs").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    calendar = _calendar()
    names = _symbol_names(symbols, rng)
    etf = rng.random(symbols) < 0.27  # the Kaggle dump: ~2,100 ETFs of ~8,000
    lengths = rng.integers(250, 7000, symbols)
    corrupt_files = {int(i) for i in rng.choice(symbols, max(symbols // 1000, 3), replace=False)}
    corrupt_rows = {int(i) for i in rng.choice(symbols, max(symbols // 100, 5), replace=False)}
    seeds = rng.integers(0, 2**63, symbols)

    def one(i: int) -> tuple[int, int]:
        path = root / ("etfs" if etf[i] else "stocks") / f"{names[i]}.csv"
        local = np.random.default_rng(int(seeds[i]))
        if i in corrupt_files:
            kind = i % 3
            body = [
                b"",
                b"<!DOCTYPE html><html><body>Rate limited</body></html>\n",
                b"date,close\n2020-01-02,1.0\n",
            ][kind]
            path.write_bytes(body)
            return 0, 0
        days = calendar[len(calendar) - int(lengths[i]) :]
        frame = _series(days, local)
        bad = 0
        if i in corrupt_rows:
            frame, bad = _corrupt_rows(frame, local)
        frame.write_csv(path, float_precision=6)
        return frame.height, bad

    with ThreadPoolExecutor(workers) as pool:
        counts = list(pool.map(one, range(symbols)))
    meta = pl.DataFrame(
        {
            "Nasdaq Traded": ["Y"] * symbols,
            "Symbol": names,
            "Security Name": [f"{n} Corp. - Common Stock" for n in names],
            "ETF": ["Y" if e else "N" for e in etf],
        }
    )
    meta.write_csv(root / "symbols_valid_meta.csv")
    info = {
        **wanted,
        "files": symbols,
        "rows": int(sum(c for c, _ in counts)),
        "bad_rows_planted": int(sum(b for _, b in counts)),
        "corrupt_files": len(corrupt_files),
    }
    marker.write_text(json.dumps(info))
    return info


if __name__ == "__main__":
    import sys
    import time

    t = time.perf_counter()
    print(generate(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 8000))
    print(f"{time.perf_counter() - t:.1f} s")

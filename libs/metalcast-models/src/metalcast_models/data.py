"""Where training data comes from: an ABC with a real, an in-memory and a generated source.

Contract of :meth:`TrainingData.window`: a ``DataFrame`` whose index holds hourly UTC
timestamps (ascending), with one float column per requested ticker (``NaN`` where a value
is missing). It should cover the last ``x_size`` hours; more history is allowed (only
the last ``x_size`` hours are used). A ticker the source knows nothing about is simply
left out; the model marks it failed.
"""

from __future__ import annotations

import abc
import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from metalcast_core import metal_for


class TrainingData(abc.ABC):
    @abc.abstractmethod
    def window(self, tickers: Sequence[str], x_size: int) -> pd.DataFrame:
        """At least the last ``x_size`` hourly rows for ``tickers`` (see module docstring)."""


class FrameTrainingData(TrainingData):
    """An in-memory frame: for tests, and for callers that fetched the data themselves."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    def window(self, tickers: Sequence[str], x_size: int) -> pd.DataFrame:
        present = [t for t in tickers if t in self._frame.columns]
        return self._frame[present].copy()


# --- PostgreSQL ------------------------------------------------------------------------

SOURCE_TABLE = "analytics.metal_prices"


def history_query(columns: Sequence[str]) -> str:
    """Rows of ``analytics.metal_prices`` holding each column's newest ``$1`` values.

    One index-ordered scan per column (``WHERE col IS NOT NULL ORDER BY ts DESC LIMIT $1``);
    a metal's hours without a price are skipped, so its window reaches back over closures.
    """
    if not columns:
        raise ValueError("no columns to read")
    newest = " UNION ".join(
        f"(SELECT ts FROM {SOURCE_TABLE} WHERE {c} IS NOT NULL ORDER BY ts DESC LIMIT $1)"
        for c in columns
    )
    return f"SELECT ts, {', '.join(columns)} FROM {SOURCE_TABLE} WHERE ts IN ({newest}) ORDER BY ts"


class PostgresTrainingData(TrainingData):
    """Reads each metal's newest observed hourly values from ``analytics.metal_prices`` (the
    source of ``ml.metal_prices_training``) with asyncpg.

    ``window`` gives at least the last ``x_size`` observed values per ticker (``history``
    more if asked), with ``NaN`` where a row carries another metal's price but not this
    one's. :meth:`window` runs the query with ``asyncio.run`` and so must not be called from
    a running event loop: async callers await :meth:`fetch` instead.
    """

    def __init__(self, dsn: str, *, timeout_s: float = 30.0, history: int = 0) -> None:
        self._dsn = dsn
        self._timeout_s = timeout_s
        self._history = history

    def window(self, tickers: Sequence[str], x_size: int) -> pd.DataFrame:
        return asyncio.run(self.fetch(tickers, x_size))

    async def fetch(self, tickers: Sequence[str], x_size: int) -> pd.DataFrame:
        import asyncpg

        conn = await asyncpg.connect(self._dsn, timeout=self._timeout_s)
        try:
            return await fetch_history(conn, tickers, x_size + self._history, self._timeout_s)
        finally:
            await conn.close()


async def fetch_history(
    conn: Any, tickers: Sequence[str], per_ticker: int, timeout_s: float | None = None
) -> pd.DataFrame:
    """The newest ``per_ticker`` observed values of each metal ticker, as one frame."""
    columns = _metal_columns(tickers)
    if not columns:
        return rows_to_frame([], columns)
    rows = await conn.fetch(history_query(list(columns.values())), per_ticker, timeout=timeout_s)
    return rows_to_frame([dict(r) for r in rows], columns)


def _metal_columns(tickers: Sequence[str]) -> dict[str, str]:
    """ticker -> analytics column, for the tickers that are metals."""
    columns: dict[str, str] = {}
    for ticker in tickers:
        try:
            columns[ticker] = metal_for(ticker).column
        except KeyError:
            continue
    return columns


def rows_to_frame(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> pd.DataFrame:
    """Rows with ``ts`` and metal columns -> the :class:`TrainingData` frame shape."""
    index = pd.DatetimeIndex([_as_utc(r["ts"]) for r in rows], name="ts")
    data = {
        ticker: np.array(
            [math.nan if r[column] is None else float(r[column]) for r in rows], dtype=float
        )
        for ticker, column in columns.items()
    }
    return pd.DataFrame(data, index=index, columns=list(columns), dtype=float)


def _as_utc(value: datetime) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)


# --- generated -------------------------------------------------------------------------

# ticker -> (price level, hourly standard deviation of log-price increments)
GENERATED_LEVELS: dict[str, tuple[float, float]] = {
    "XAUUSD": (2650.0, 0.0015),
    "XAGUSD": (31.0, 0.0030),
    "XPTUSD": (960.0, 0.0028),
    "XPDUSD": (1000.0, 0.0035),
}
_DEFAULT_SIGMA = 0.003


@dataclass(frozen=True)
class GeneratedData(TrainingData):
    """The data scientists' generator: an integrated AR(1) in log prices.

    Log-price increments follow ``r_t = phi * r_(t-1) + e_t`` (stationary, standard
    deviation ``sigma`` per ticker), started from the ticker's realistic level. Unknown
    tickers get a level drawn around 100. Deterministic for a given ``seed`` (``None``:
    fresh randomness); the last row is ``end`` (default: the current hour, UTC).
    """

    seed: int | None = 0
    phi: float = 0.3
    end: datetime | None = None
    history: int = 0  # extra hours before the window

    def window(self, tickers: Sequence[str], x_size: int) -> pd.DataFrame:
        periods = x_size + self.history
        end = pd.Timestamp(self.end or datetime.now(UTC))
        end = (end.tz_localize(UTC) if end.tzinfo is None else end.tz_convert(UTC)).floor("h")
        index = pd.date_range(end=end, periods=periods, freq="h", name="ts")
        prices = generate_prices(tickers, periods, seed=self.seed, phi=self.phi)
        return pd.DataFrame(prices, index=index, columns=list(tickers))


def generate_prices(
    tickers: Sequence[str], periods: int, *, seed: int | None = 0, phi: float = 0.3
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A ``periods x len(tickers)`` array of prices (see :class:`GeneratedData`)."""
    if not -1.0 < phi < 1.0:
        raise ValueError("phi must lie in (-1, 1) for a stationary AR(1)")
    rng = np.random.default_rng(seed)
    n = len(tickers)
    levels = np.empty(n)
    sigmas = np.empty(n)
    for i, ticker in enumerate(tickers):
        level, sigma = GENERATED_LEVELS.get(
            ticker, (float(100.0 * math.exp(rng.normal(0.0, 1.0))), _DEFAULT_SIGMA)
        )
        levels[i], sigmas[i] = level, sigma
    innovations = rng.normal(0.0, 1.0, size=(periods, n)) * sigmas * math.sqrt(1 - phi * phi)
    increments = np.empty((periods, n))
    previous = rng.normal(0.0, 1.0, size=n) * sigmas  # stationary start
    for t in range(periods):
        previous = phi * previous + innovations[t]
        increments[t] = previous
    increments[0] = 0.0  # the first price is the level itself
    result: np.ndarray[Any, np.dtype[np.float64]] = levels * np.exp(np.cumsum(increments, axis=0))
    return result

"""Production models in memory, keyed by (symbol, model_version_id).

A model is downloaded from S3, checked against its recorded sha256, loaded and asked once
for ``max_horizon_h`` steps with their intervals; every forecast afterwards slices that
table. A version with a calibration (made from its backtest) gets calibrated intervals:
the model's point, bounds ``point ± q_h · scale``
(:func:`metalcast_models.backtest.calibrated_bounds`); a version without one keeps the
model's own intervals, and says so. An entry is replaced when the production pointer names
another version. Forecasts read the pointers through :class:`PointerCache` (at most one
query per ``pointer_ttl_s``, cleared by a rollback or unpin through the API and by
``models.trained.v1`` and ``models.production.v1`` events); those events and a periodic
pointer check also preload newly promoted versions. sktime work runs in a thread, one load
per symbol at a time.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from metalcast_api.metrics import ApiMetrics
from metalcast_core import METAL_SYMBOLS, METALS, METALS_BY_SYMBOL, Instrument, fetch_catalogue
from metalcast_models import registry
from metalcast_models.registry import VersionInfo
from metalcast_models.sessions import days_after

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)
HOUR = timedelta(hours=1)
COLUMNS = ("point", "lower_80", "upper_80", "lower_95", "upper_95")
UNCALIBRATED = "model (uncalibrated)"


class ForecastStep(BaseModel):
    """One hourly step of a loaded model's table; the forecasts endpoint answers these as they
    are (``metalcast_api.forecasts.schemas`` re-exports it)."""

    ts: datetime = Field(description="The UTC hour this step predicts")
    point: float
    lower_80: float
    upper_80: float
    lower_95: float
    upper_95: float


class ModelUnavailable(Exception):
    """The production model's file cannot be downloaded, verified or loaded."""


@dataclass(frozen=True)
class LoadedModel:
    info: VersionInfo
    cutoff: datetime  # the forecaster's own cutoff: the last hour it was trained on
    steps: tuple[ForecastStep, ...]  # max_horizon_h steps after the cutoff
    loaded_at: datetime
    load_seconds: float
    interval_method: str = UNCALIBRATED
    # Coverage of the calibrated 80%/95% intervals measured in the backtest ("80", "95").
    interval_coverage: dict[str, float | None] | None = None


Columns = dict[str, np.ndarray[Any, np.dtype[np.float64]]]


def calibrate(
    info: VersionInfo, columns: Columns
) -> tuple[Columns, str, dict[str, float | None] | None]:
    """The columns with calibrated bounds, the method and its measured coverage; the
    model's own intervals (``UNCALIBRATED``) when the version has no usable calibration."""
    from metalcast_models.backtest import INTERVAL_METHOD, calibrated_bounds

    cal = info.calibration
    if not cal:
        return columns, UNCALIBRATED, None
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            bounds = calibrated_bounds(columns["point"], cal, float(cal["scale"]))
        if not all(np.isfinite(b).all() for pair in bounds.values() for b in pair):
            raise ValueError("calibrated bounds are not finite")
    except (KeyError, TypeError, ValueError) as exc:
        log.warning(
            "%s v%d: calibration unusable (%s: %s); the model's own intervals are used",
            info.symbol,
            info.version,
            type(exc).__name__,
            exc,
        )
        return columns, UNCALIBRATED, None
    out = dict(columns)
    for label in ("80", "95"):
        out[f"lower_{label}"], out[f"upper_{label}"] = bounds[label]
    coverage = {label: _number(cal.get(f"coverage_{label}")) for label in ("80", "95")}
    return out, str(cal.get("method") or INTERVAL_METHOD), coverage


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


def load_model(
    s3: S3Client,
    info: VersionInfo,
    horizon: int,
    step: timedelta = HOUR,
    calendar: str | None = None,
) -> LoadedModel:
    """Blocking: download, verify, load and predict ``horizon`` steps (call in a thread).
    ``step``: the instrument's cadence; the model counts entries after its cutoff (its
    window's last value), so step k of a daily instrument is the k-th day after the cutoff
    that the instrument trades: the k-th session of ``calendar`` (NYSE for stocks and ETFs,
    :mod:`metalcast_models.sessions`), or the cutoff + k days without one."""
    from metalcast_models import load_forecaster, predict_with_intervals, sha256_of

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="metalcast-api-") as tmp:
        try:
            path = registry.download_artifact(s3, info.artifact_uri, Path(tmp))
        except Exception as exc:
            raise ModelUnavailable(f"cannot download {info.artifact_uri}: {exc}") from exc
        actual = sha256_of(path)
        if actual != info.sha256:
            raise ModelUnavailable(
                f"{info.artifact_uri}: sha256 {actual} differs from the recorded {info.sha256}"
            )
        try:
            forecaster = load_forecaster(path)
            frame = predict_with_intervals(forecaster, horizon, (0.8, 0.95))
        except Exception as exc:
            raise ModelUnavailable(
                f"{info.artifact_uri} does not load or predict: {type(exc).__name__}: {exc}"
            ) from exc
    index = pd.DatetimeIndex(frame.index)
    columns, method, coverage = calibrate(
        info, {c: frame[c].to_numpy(dtype=float) for c in COLUMNS}
    )
    cutoff: datetime = index[0].to_pydatetime() - HOUR
    if step == timedelta(days=1):
        days = days_after(cutoff.date(), len(index), calendar)
        index = pd.DatetimeIndex([datetime(d.year, d.month, d.day, tzinfo=UTC) for d in days])
    elif step != HOUR:
        index = pd.DatetimeIndex([cutoff + (i + 1) * step for i in range(len(index))])
    steps = tuple(
        ForecastStep(ts=ts.to_pydatetime(), **{c: float(columns[c][i]) for c in COLUMNS})
        for i, ts in enumerate(index)
    )
    return LoadedModel(
        info,
        cutoff,
        steps,
        datetime.now(UTC),
        time.perf_counter() - started,
        method,
        coverage,
    )


@dataclass(frozen=True)
class Pointer:
    model_version_id: int | None  # None: no production model yet
    last_observation: datetime | None  # newest hour with a value in analytics.metal_prices


POINTERS_SQL = """
SELECT s.symbol, p.model_version_id
FROM unnest($1::text[]) AS s(symbol)
LEFT JOIN ml.production_models AS p ON p.symbol = s.symbol
"""
LAST_HOURS_SQL = "SELECT " + ", ".join(
    f"(SELECT ts FROM analytics.metal_prices WHERE {m.column} IS NOT NULL "
    f"ORDER BY ts DESC LIMIT 1) AS {m.column}"
    for m in METALS
)


class PointerCache:
    """The production pointer and newest observation of every metal, read at most once per
    ``ttl_s`` (one query for all metals, one reader at a time); ``invalidate`` forces a read."""

    def __init__(self, pool: asyncpg.Pool, ttl_s: float) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._value: dict[str, Pointer] = {}
        self._at = float("-inf")
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._ttl_s > 0 and time.monotonic() - self._at < self._ttl_s

    async def get(self) -> dict[str, Pointer]:
        if self._fresh():
            return self._value
        async with self._lock:
            if self._fresh():
                return self._value
            started = time.monotonic()
            async with self._pool.acquire() as conn:
                pointers = await conn.fetch(POINTERS_SQL, list(METAL_SYMBOLS))
                hours = await conn.fetchrow(LAST_HOURS_SQL)
            self._value = {
                r["symbol"]: Pointer(
                    r["model_version_id"],
                    hours[METALS_BY_SYMBOL[r["symbol"]].column] if hours else None,
                )
                for r in pointers
            }
            self._at = started
            return self._value

    def invalidate(self) -> None:
        self._at = float("-inf")


class ForecastCache:
    def __init__(
        self,
        s3: S3Client,
        pool: asyncpg.Pool,
        metrics: ApiMetrics,
        max_horizon_h: int,
        pointer_ttl_s: float = 1.0,
    ) -> None:
        self._s3 = s3
        self._pool = pool
        self.pointers = PointerCache(pool, pointer_ttl_s)
        self._metrics = metrics
        self.max_horizon_h = max_horizon_h
        self._models: dict[tuple[str, int], LoadedModel] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Instruments other than the metals: (steps to predict, the cadence's step, the
        # exchange calendar of daily steps), learnt from the catalogue on their first request.
        self._shapes: dict[str, tuple[int, timedelta, str | None]] = {}

    def shape(self, symbol: str) -> tuple[int, timedelta, str | None]:
        return self._shapes.get(symbol, (self.max_horizon_h, HOUR, None))

    def configure(
        self, symbol: str, horizon: int, step: timedelta, calendar: str | None = None
    ) -> None:
        """How far ``symbol``'s models predict and in which steps (and, for daily steps,
        on which exchange's sessions); a change drops the loaded model (the next request
        loads it again)."""
        if self._shapes.get(symbol) != (horizon, step, calendar):
            self._shapes[symbol] = (horizon, step, calendar)
            for key in [k for k in self._models if k[0] == symbol]:
                del self._models[key]

    async def catalogue(self) -> dict[str, Instrument]:
        """The instrument catalogue (``ref.instruments``) by symbol, read on each call."""
        async with self._pool.acquire() as conn:
            return {i.symbol: i for i in await fetch_catalogue(conn)}

    async def instrument_pointer(self, symbol: str, cadence: str) -> Pointer:
        """The production pointer and newest observation of an instrument (not cached)."""
        last = (
            "SELECT (max(date)::timestamp AT TIME ZONE 'UTC') FROM prices.bars WHERE symbol = $1"
            if cadence == "daily"
            else "SELECT date_trunc('hour', max(observed_at), 'UTC') FROM prices.ticks "
            "WHERE symbol = $1 AND instrument = 'spot'"
        )
        async with self._pool.acquire() as conn:
            version = await conn.fetchval(
                "SELECT model_version_id FROM ml.production_models WHERE symbol = $1", symbol
            )
            newest = await conn.fetchval(last, symbol)
        return Pointer(version, newest)

    def cached(self) -> list[LoadedModel]:
        return list(self._models.values())

    def peek(self, symbol: str, model_version_id: int) -> LoadedModel | None:
        return self._models.get((symbol, model_version_id))

    async def get(self, symbol: str, model_version_id: int) -> tuple[LoadedModel, bool]:
        """The model, and whether it came from memory. ``ModelUnavailable`` if it won't load."""
        model = self._models.get((symbol, model_version_id))
        if model is not None:
            self._metrics.cache_hits.labels(symbol).inc()
            return model, True
        lock = self._locks.setdefault(symbol, asyncio.Lock())
        async with lock:
            model = self._models.get((symbol, model_version_id))
            if model is not None:  # loaded by a concurrent request or the preloader
                self._metrics.cache_hits.labels(symbol).inc()
                return model, True
            self._metrics.cache_misses.labels(symbol).inc()
            async with self._pool.acquire() as conn:
                current = {v.symbol: v for v in await registry.production(conn)}
            info = current.get(symbol)
            if info is None:
                raise ModelUnavailable(f"{symbol} has no production model any more")
            model = await self._load(info)
            return model, False

    async def _load(self, info: VersionInfo) -> LoadedModel:
        horizon, step, calendar = self.shape(info.symbol)
        model = await asyncio.to_thread(load_model, self._s3, info, horizon, step, calendar)
        # Keep only the newest version per symbol: the pointer moved, older ones are done.
        for key in [k for k in self._models if k[0] == info.symbol]:
            del self._models[key]
        self._models[(info.symbol, info.id)] = model
        log.info(
            "loaded %s v%d (id %d) in %.2fs", info.symbol, info.version, info.id, model.load_seconds
        )
        return model

    async def refresh(self) -> list[str]:
        """Load every production version not yet in memory. Returns 'XAU v3'-style names."""
        async with self._pool.acquire() as conn:
            infos = await registry.production(conn)
        infos = [i for i in infos if i.symbol in METAL_SYMBOLS]  # not VOLUME (resources/volume)
        loaded = []
        for info in infos:
            if (info.symbol, info.id) in self._models:
                continue
            if info.symbol not in METAL_SYMBOLS and info.symbol not in self._shapes:
                continue  # an instrument loads on its first request, once its shape is known
            lock = self._locks.setdefault(info.symbol, asyncio.Lock())
            async with lock:
                if (info.symbol, info.id) in self._models:
                    continue
                try:
                    await self._load(info)
                    loaded.append(f"{info.symbol} v{info.version}")
                except ModelUnavailable as exc:
                    log.warning("cannot preload %s v%d: %s", info.symbol, info.version, exc)
        return loaded

    async def watch_pointers(self, every_s: float) -> None:
        """Preload promoted versions every ``every_s`` seconds (runs until cancelled)."""
        while True:
            try:
                await self.refresh()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("pointer check failed: %s", exc)
            await asyncio.sleep(every_s)

"""Training the catalogued instruments of one run in batches.

The metals are trained one by one (:meth:`TrainingRunner._one`); a run may also touch
hundreds of instruments, each with its own small series. Their per-instrument CPU work is
milliseconds, so what costs is the traffic around it. Here they go in batches of
``instrument_batch``:

1. one query each for the batch's cached backtest forecasts, pins and the versions already
   fitted on each window;
2. one trip to the process pool (or a thread) for the whole batch: backtest, champion/
   challenger, fit, save and reload-check (:func:`evaluate_instruments`);
3. the model files uploaded side by side, then one transaction for the batch's cache,
   backtests, versions, pointer moves and results.

``instrument_batches`` batches are in flight at once, so the database and S3 work of one
overlaps the pool's work on the next. What one instrument's bad data or failed fit does is
recorded for it alone; a batch whose transaction fails records each of its instruments as
failed with the reason, and never stops the other batches.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pandas as pd

from metalcast_core import Instrument
from metalcast_models import registry
from metalcast_models.backtest import Candidate, Rules, Series, window_hash, window_scale
from metalcast_models.fitting import span_hours
from metalcast_models.registry import NewVersion, PointerMove, VersionInfo
from metalcast_trainer import store
from metalcast_trainer.config import TrainerSection, TrainerSettings
from metalcast_trainer.evaluation import (
    InstrumentJob,
    InstrumentOutcome,
    champion_of,
    evaluate_instruments,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from metalcast_trainer.runner import RunReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """How one series is trained: the window, the candidates, the rules and the backtest
    settings. The metals' comes from the trainer's settings; an instrument's from its
    catalogue entry (``model``)."""

    x_size: int
    candidates: list[Candidate]
    rules: Rules
    cfg: TrainerSection
    cadence: str = "hourly"


# An instrument's newest values, by cadence: the long views (docs/instruments.md).
INSTRUMENT_SERIES_SQL = {
    "hourly": """
SELECT symbol, ts AS at, price::float8 AS value FROM (
    SELECT symbol, ts, price, row_number() OVER (PARTITION BY symbol ORDER BY ts DESC) AS n
    FROM analytics.instrument_prices_hourly WHERE symbol = ANY($1::text[])
) AS s WHERE n <= $2 ORDER BY symbol, ts
""",
    "daily": """
SELECT symbol, (date::timestamp AT TIME ZONE 'UTC') AS at, close::float8 AS value FROM (
    SELECT symbol, date, close, row_number() OVER (PARTITION BY symbol ORDER BY date DESC) AS n
    FROM analytics.instrument_prices_daily WHERE symbol = ANY($1::text[])
) AS s WHERE n <= $2 ORDER BY symbol, date
""",
}


async def fetch_instrument_series(
    conn: Any, cadence: str, symbols: Sequence[str], per_symbol: int
) -> dict[str, pd.Series]:
    """The newest ``per_symbol`` values of each symbol, oldest first, indexed by UTC time."""
    rows = await conn.fetch(INSTRUMENT_SERIES_SQL[cadence], list(symbols), per_symbol)
    grouped: dict[str, tuple[list[Any], list[float]]] = {s: ([], []) for s in symbols}
    for r in rows:
        stamps, values = grouped[r["symbol"]]
        stamps.append(r["at"])
        values.append(r["value"])
    return {
        symbol: pd.Series(
            values, index=pd.DatetimeIndex(stamps, name="ts").tz_convert("UTC"), dtype=float
        )
        if stamps
        else pd.Series(dtype=float)
        for symbol, (stamps, values) in grouped.items()
    }


class LazyProcessPool:
    """A process pool (one BLAS thread per worker) started on first use: a trainer that
    never trains an instrument never spawns it. Shared by the runners of one process."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: Executor | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Executor:
        if self._executor is None:
            async with self._lock:
                if self._executor is None:
                    from metalcast_models import blas_process_pool

                    self._executor = await asyncio.to_thread(blas_process_pool, self.workers)
        return self._executor

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def describe_window(observed: pd.Series, x_size: int) -> dict[str, Any]:
    """The window a series' last ``x_size`` values make: first and last stamp, hours
    spanned and entries (as recorded with every result)."""
    stamps = pd.DatetimeIndex(observed.index)
    start = stamps[-x_size] if len(stamps) >= x_size else (stamps[0] if len(stamps) else None)
    end = stamps[-1] if len(stamps) else None
    win: dict[str, Any] = {
        "start": None if start is None else start.to_pydatetime(),
        "end": None if end is None else end.to_pydatetime(),
    }
    win["hours"] = span_hours(win["start"], win["end"])
    win["entries"] = min(len(stamps), x_size)
    return win


@dataclass
class _Pending:
    """An instrument that needs a backtest this run."""

    symbol: str
    observed: pd.Series
    plan: Plan
    champion: Candidate | None
    window: dict[str, Any]
    digest: str
    since: datetime

    def keys(self) -> list[str]:
        keys = [c.key for c in self.plan.candidates]
        if self.champion is not None and self.champion.key not in keys:
            keys.append(self.champion.key)
        return keys


@dataclass
class _BatchResult:
    """What one batch's transaction recorded; copied into the run's report after commit."""

    results: list[store.Result] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    decisions: dict[str, str] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    moves: list[PointerMove] = field(default_factory=list)


class InstrumentBatches:
    """Trains a run's instruments in batches (module docstring)."""

    def __init__(
        self,
        settings: TrainerSettings,
        pool: asyncpg.Pool,
        s3: S3Client,
        executor: LazyProcessPool | None,
    ) -> None:
        self._settings = settings
        self._cfg = settings.trainer
        self._pool = pool
        self._s3 = s3
        self._executor = executor

    async def train(
        self,
        report: RunReport,
        instruments: Sequence[Instrument],
        plans: dict[str, Plan],
        current: dict[str, VersionInfo],
        work: Path,
    ) -> None:
        if not instruments:
            return
        t = time.perf_counter()
        series = await self._series(instruments, plans)
        report.timings["load_s"] = round(report.timings["load_s"] + time.perf_counter() - t, 4)

        pending: list[_Pending] = []
        settled = _BatchResult()
        for inst in instruments:
            symbol, plan = inst.symbol, plans[inst.symbol]
            observed = series[symbol]
            win = describe_window(observed, plan.x_size)
            report.windows[symbol] = win
            if len(observed) < plan.x_size:
                reason = (
                    f"too few rows: {len(observed)} observed {plan.cadence} values, "
                    f"need {plan.x_size}"
                )
                settled.failed[symbol] = reason
                settled.results.append(store.Result(symbol, "failed", reason, window=win))
                continue
            values = observed.to_numpy(dtype=float)
            digest = window_hash(values[-plan.x_size :])
            info = current.get(symbol)
            champion = champion_of(info, plan.candidates)
            if (
                info is not None
                and info.window_hash == digest
                and champion is not None
                and champion.key in {c.key for c in plan.candidates}
            ):
                # The production version already fits this very window: nothing moved.
                settled.decisions[symbol] = "the production version fits this window"
                settled.unchanged.append(symbol)
                settled.results.append(
                    store.Result(
                        symbol,
                        "unchanged",
                        f"v{info.version} already fits this window with {champion.name}",
                        info.id,
                        win,
                        {"action": "unchanged", "chosen": champion.name, "window_hash": digest},
                    )
                )
                continue
            stamps = [ts.to_pydatetime() for ts in pd.DatetimeIndex(observed.index)]
            origins = Series(values, stamps).origins(plan.x_size, plan.cfg.backtest_origins)
            since = stamps[origins[0]] if origins else stamps[-1]
            pending.append(_Pending(symbol, observed, plan, champion, win, digest, since))
        if settled.results:
            async with self._pool.acquire() as conn:
                await store.record_results(conn, report.run_id, settled.results)
        self._merge(report, settled)

        size = self._batch_size(len(pending))
        batches = [pending[i : i + size] for i in range(0, len(pending), size)]
        gate = asyncio.Semaphore(self._cfg.instrument_batches)

        async def one(batch: list[_Pending]) -> None:
            async with gate:
                try:
                    self._merge(report, await self._batch(report, batch, work))
                except Exception as exc:  # one batch's failure never stops the others
                    log.exception(
                        "run %s: a batch of %d instruments failed", report.run_id, len(batch)
                    )
                    await self._batch_failed(report, batch, f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(one(b) for b in batches))

    def _batch_size(self, pending: int) -> int:
        """Batches of at most ``instrument_batch``, and at least two per pool worker (while
        one batch is stored, the workers have the next)."""
        workers = max(1, self._executor.workers if self._executor is not None else 1)
        return max(1, min(self._cfg.instrument_batch, math.ceil(pending / (2 * workers))))

    async def _series(
        self, instruments: Sequence[Instrument], plans: dict[str, Plan]
    ) -> dict[str, pd.Series]:
        series: dict[str, pd.Series] = {}
        async with self._pool.acquire() as conn:
            for cadence in ("hourly", "daily"):
                chosen = [i for i in instruments if i.cadence == cadence]
                if not chosen:
                    continue
                need = max(plans[i.symbol].x_size for i in chosen) + self._cfg.backtest_origins
                series.update(
                    await fetch_instrument_series(
                        conn, cadence, [i.symbol for i in chosen], need + 1
                    )
                )
        return series

    async def _batch(self, report: RunReport, batch: list[_Pending], work: Path) -> _BatchResult:
        symbols = [p.symbol for p in batch]
        async with self._pool.acquire() as conn:
            caches = await store.load_caches(conn, {p.symbol: (p.keys(), p.since) for p in batch})
            pins = await registry.pins(conn, symbols)
            fits = await registry.find_fits(conn, {p.symbol: p.digest for p in batch})
        jobs = [
            InstrumentJob(
                symbol=p.symbol,
                observed=p.observed,
                cfg=p.plan.cfg,
                x_size=p.plan.x_size,
                candidates=tuple(p.plan.candidates),
                rules=p.plan.rules,
                champion=p.champion,
                pinned=None
                if p.symbol not in pins
                else f"{pins[p.symbol].pinned_by} at v{pins[p.symbol].version}",
                cache=caches.get(p.symbol, {}),
                fitted_keys=frozenset(fits.get(p.symbol, {})),
            )
            for p in batch
        ]
        if self._executor is not None:
            outcomes = await asyncio.get_running_loop().run_in_executor(
                await self._executor.get(), evaluate_instruments, jobs, work
            )
        else:
            outcomes = await asyncio.to_thread(evaluate_instruments, jobs, work)
        for o in outcomes:
            report.timings["backtest_s"] += round(o.backtest_s, 4)
            report.timings["fit_s"] += round(o.fit_s, 4)
            report.timings["origins_fitted"] += o.origins_fitted
            report.timings["origins_reused"] += o.origins_reused
            report.symbol_timings[o.symbol] = {"backtest_s": o.backtest_s, "fit_s": o.fit_s}
        t = time.perf_counter()
        result = await self._store(report, {p.symbol: p for p in batch}, outcomes, fits)
        report.timings["store_s"] += round(time.perf_counter() - t, 4)
        return result

    async def _store(
        self,
        report: RunReport,
        batch: dict[str, _Pending],
        outcomes: Sequence[InstrumentOutcome],
        fits: dict[str, dict[str, VersionInfo]],
    ) -> _BatchResult:
        run_id = report.run_id
        done = _BatchResult()
        fitted: list[tuple[_Pending, InstrumentOutcome, dict[str, Any]]] = []
        keep: dict[str, tuple[int, str | None]] = {}  # an existing fit to promote
        backtested = [o for o in outcomes if o.error is None]

        def fail(p: _Pending, reason: str, detail: dict[str, Any] | None = None) -> None:
            done.failed[p.symbol] = reason
            done.results.append(
                store.Result(p.symbol, "failed", reason, window=p.window, decision=detail)
            )

        for o in outcomes:
            p = batch[o.symbol]
            if o.error is not None or o.decision is None:
                fail(p, o.error or "no decision")
                continue
            d = o.decision
            done.decisions[p.symbol] = d.reason
            detail: dict[str, Any] = {
                "action": d.action,
                "chosen": d.chosen.name,
                "best": d.best.name,
                "reason": d.reason,
                "window_hash": p.digest,
                "mase": {name: mase for name, mase, _ in o.backtests.values()},
            }
            existing = fits.get(p.symbol, {}).get(d.chosen.key)
            if o.fit is None and existing is not None:
                if d.move_pointer and not existing.in_production:
                    keep[p.symbol] = (existing.id, f"run {run_id}: {d.reason}")
                done.unchanged.append(p.symbol)
                done.results.append(
                    store.Result(
                        p.symbol,
                        "unchanged",
                        f"v{existing.version} already fits this window with {d.chosen.name}",
                        existing.id,
                        p.window,
                        detail,
                    )
                )
            elif o.fit is None or not o.fit.ok:
                fail(p, (o.fit.reason if o.fit else None) or "not trained", detail)
            elif o.problem is not None or o.saved is None:
                fail(p, f"artifact check failed: {o.problem}", detail)
            else:
                fitted.append((p, o, detail))

        async with self._pool.acquire() as conn, conn.transaction():
            await store.save_caches(conn, {o.symbol: o.new_cache for o in backtested})
            await store.record_backtest_rows(
                conn,
                run_id,
                [
                    (o.symbol, key, name, text)
                    for o in backtested
                    for key, (name, _, text) in o.backtests.items()
                ],
            )
            new: list[NewVersion] = []
            notes: dict[str, tuple[bool, str]] = {}
            if fitted:
                await registry.lock_symbols(conn, [p.symbol for p, _, _ in fitted])
                numbers = await registry.next_versions(conn, [p.symbol for p, _, _ in fitted])
                t = time.perf_counter()
                uploaded = await self._upload(
                    run_id, [(p.symbol, numbers[p.symbol], o) for p, o, _ in fitted]
                )
                report.timings["upload_s"] = round(
                    report.timings.get("upload_s", 0.0) + time.perf_counter() - t, 4
                )
                for p, o, detail in fitted:
                    uri = uploaded.get(p.symbol)
                    if isinstance(uri, BaseException) or uri is None:
                        fail(p, f"upload failed: {type(uri).__name__}: {uri}", detail)
                        continue
                    new.append(self._version(run_id, p, o, numbers[p.symbol], uri))
                    assert o.decision is not None
                    notes[p.symbol] = (o.decision.move_pointer, o.decision.reason)
            ids = await registry.record_versions(conn, new) if new else {}
            targets = {
                s: (ids[s], f"run {run_id}: {reason}")
                for s, (move, reason) in notes.items()
                if move
            }
            moves = (
                await registry.move_pointers(
                    conn, {**targets, **keep}, action="promote", by="trainer", respect_pin=True
                )
                if targets or keep
                else []
            )
            moved = {m.symbol for m in moves}
            for p, _, detail in fitted:
                if p.symbol not in ids:
                    continue
                move, reason = notes[p.symbol]
                if move and p.symbol not in moved:
                    reason = f"pinned meanwhile: recorded, not promoted ({reason})"
                done.results.append(
                    store.Result(
                        p.symbol,
                        "promoted" if p.symbol in moved else "pinned",
                        reason,
                        ids[p.symbol],
                        p.window,
                        detail,
                    )
                )
                done.versions[p.symbol] = numbers[p.symbol]
            await store.record_results(conn, run_id, done.results)
        done.moves = moves
        return done

    def _version(
        self, run_id: int, p: _Pending, o: InstrumentOutcome, number: int, uri: str
    ) -> NewVersion:
        assert o.fit is not None
        assert o.saved is not None
        assert o.decision is not None
        result, d = o.fit, o.decision
        assert result.window_start is not None
        assert result.window_end is not None
        chosen = o.backtests.get(d.chosen.key)
        calibration = dict(o.calibration)
        if calibration:
            values = p.observed.to_numpy(dtype=float)
            calibration["scale"] = window_scale(values[-p.plan.x_size :])
        return registry.version_of_fit(
            result,
            o.saved,
            symbol=p.symbol,
            version=number,
            run_id=run_id,
            model_class=o.model_class,
            artifact_uri=uri,
            candidate=d.chosen.name,
            candidate_key=d.chosen.key,
            window_hash=p.digest,
            backtest=chosen[2] if chosen is not None else {},
            calibration=calibration,
            decision=d.reason,
        )

    async def _upload(
        self, run_id: int, files: Sequence[tuple[str, int, InstrumentOutcome]]
    ) -> dict[str, str | BaseException]:
        """Upload each model file (side by side, a few at a time); its URI, or what went
        wrong, by symbol."""
        gate = asyncio.Semaphore(8)

        async def one(symbol: str, number: int, o: InstrumentOutcome) -> str:
            assert o.saved is not None
            async with gate:
                return await asyncio.to_thread(
                    registry.upload_artifact,
                    self._s3,
                    self._settings.s3.models_bucket,
                    self._cfg.models_prefix,
                    symbol,
                    number,
                    o.saved.path,
                    sha256=o.saved.sha256,
                    run_id=run_id,
                )

        outcomes = await asyncio.gather(
            *(one(symbol, number, o) for symbol, number, o in files), return_exceptions=True
        )
        return {symbol: uri for (symbol, _, _), uri in zip(files, outcomes, strict=True)}

    async def _batch_failed(self, report: RunReport, batch: list[_Pending], reason: str) -> None:
        failed = _BatchResult()
        for p in batch:
            failed.failed[p.symbol] = reason
            failed.results.append(store.Result(p.symbol, "failed", reason, window=p.window))
        try:
            async with self._pool.acquire() as conn:
                await store.record_results(conn, report.run_id, failed.results)
        except Exception:
            log.exception("run %s: could not record a failed batch", report.run_id)
        self._merge(report, failed)

    @staticmethod
    def _merge(report: RunReport, done: _BatchResult) -> None:
        for symbol, reason in done.failed.items():
            log.warning("run %s: %s not trained: %s", report.run_id, symbol, reason)
        report.failed.update(done.failed)
        report.decisions.update(done.decisions)
        report.versions.update(done.versions)
        report.unchanged.extend(done.unchanged)
        for move in done.moves:
            report.promoted[move.symbol] = move.to_version
            report.moves.append(move)

"""One training run, per metal:

1. read the metal's observed history (its last ``x_size`` values are the window; hours
   without a price are skipped, never imputed);
2. backtest every candidate (and the production version's configuration) on the same
   rolling origins, reusing cached forecasts whose window is unchanged;
3. decide champion/challenger (:func:`metalcast_models.backtest.decide`);
4. if that configuration was already fitted on this very window, change nothing
   (``unchanged``); otherwise fit it, check the file reloads and predicts, upload it, record
   the version with its backtest and calibration, and move the pointer unless it is pinned.

Bad data for one metal is recorded with its reason and never stops the others; production
stays where it was for that metal.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pandas as pd

from metalcast_core import BatchLoaded, Catalogue, Instrument, fetch_catalogue, metal_for
from metalcast_models import (
    FitResult,
    GeneratedData,
    SavedArtifact,
    check_artifact,
    registry,
    save_forecaster,
)
from metalcast_models.backtest import (
    Decision,
    Score,
    Series,
    window_hash,
    window_scale,
)
from metalcast_models.data import fetch_history
from metalcast_models.families import get_family
from metalcast_models.fitting import fit_frame, fit_series, jsonable, span_hours
from metalcast_models.registry import PointerMove, VersionInfo
from metalcast_trainer import store
from metalcast_trainer.config import TrainerSettings, instrument_plan
from metalcast_trainer.evaluation import backtest_and_score, champion_of, choose, fit_and_save
from metalcast_trainer.instruments import (
    InstrumentBatches,
    LazyProcessPool,
    Plan,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    run_id: int
    status: str
    promoted: dict[str, int] = field(default_factory=dict)  # symbol -> version now serving
    versions: dict[str, int] = field(default_factory=dict)  # symbol -> new version recorded
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> reason
    decisions: dict[str, str] = field(default_factory=dict)  # symbol -> why
    windows: dict[str, dict[str, Any]] = field(default_factory=dict)
    moves: list[PointerMove] = field(default_factory=list)
    window_start: datetime | None = None
    window_end: datetime | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # Per metal: the seconds its backtest and its production fit took ("backtest_s", "fit_s").
    symbol_timings: dict[str, dict[str, float]] = field(default_factory=dict)
    error: str | None = None


async def promote_version(
    conn: asyncpg.Connection, run_id: int, symbol: str, version_id: int, reason: str
) -> PointerMove | None:
    """The trainer moves ``symbol``'s production pointer to ``version_id`` for run
    ``run_id`` (noted with ``reason``); a pinned pointer stays where it is (``None``)."""
    return await registry.move_pointer(
        conn,
        symbol,
        version_id,
        action="promote",
        by="trainer",
        note=f"run {run_id}: {reason}",
        respect_pin=True,
    )


def _scratch(root: Path, prefix: str) -> Path:
    """A new folder under ``root`` (created if missing) for one run's files."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))


async def recorded_run(
    pool: asyncpg.Pool,
    work_root: Path,
    label: str,
    train: Callable[[RunReport, Path], Awaitable[None]],
    *,
    trigger: str,
    batch_id: uuid.UUID | None,
    events: int,
    family: str,
    x_size: int,
    y_size: int,
    candidates: Sequence[Mapping[str, Any]],
    on_failure: Callable[[RunReport], Awaitable[None]] | None = None,
) -> RunReport:
    """One training run as ``ml.training_runs`` records it: started, ``train(report, work)``
    in a scratch folder of its own (removed after), finished with its status, error, window
    and timings. A ``train`` that raises makes a failed run with the cause (``on_failure``
    may record more), never an exception out of here."""
    started = time.perf_counter()
    async with pool.acquire() as conn:
        run_id = await store.start_run(
            conn, trigger, batch_id, events, family, x_size, y_size, candidates
        )
    report = RunReport(run_id=run_id, status="running")
    work = _scratch(work_root, f"{label}{run_id}-")
    try:
        await train(report, work)
    except Exception as exc:  # recorded with its cause, never raised out of the loop
        log.exception("%s %s failed", label, run_id)
        report.status = "failed"
        report.error = f"{type(exc).__name__}: {exc}"
        if on_failure is not None:
            await on_failure(report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.timings["total_s"] = round(time.perf_counter() - started, 4)
    async with pool.acquire() as conn:
        await store.finish_run(
            conn,
            run_id,
            report.status,
            report.error,
            report.window_start,
            report.window_end,
            report.timings,
        )
    return report


class TrainingRunner:
    def __init__(
        self,
        settings: TrainerSettings,
        pool: asyncpg.Pool,
        s3: S3Client,
        executor: LazyProcessPool | None = None,
    ) -> None:
        """``executor``: where instruments' backtests run (a process pool: one BLAS thread
        per worker); ``None``: threads of this process, as the metals' always do."""
        self._executor = executor
        self._settings = settings
        self._cfg = settings.trainer
        self._pool = pool
        self._s3 = s3
        self.candidates = self._cfg.build_candidates()
        self._rules = self._cfg.rules()
        self._metal_plan = Plan(self._cfg.x_size, self.candidates, self._rules, self._cfg)
        self._instruments = InstrumentBatches(settings, pool, s3, executor)
        # The symbols the events handed to :meth:`wants` touched; :meth:`run` trains those
        # (the metals all together, as before, when any metal was touched). ``None``: all.
        self._pending: set[str] | None = None

    def take_instruments(self) -> tuple[list[str], bool]:
        """The instruments (not metals) the last :meth:`wants` found, removed from the next
        run (they are dispatched to ``pipeline.train-requested.v1`` instead), and whether a
        metal is left for the run."""
        metals = {metal_for(t).symbol for t in self._cfg.tickers}
        pending = self._pending or set()
        self._pending = pending & metals
        return sorted(pending - metals), bool(self._pending)

    def want(self, symbols: Sequence[str]) -> None:
        """Train exactly these symbols in the next :meth:`run` (train-requested events)."""
        self._pending = set(symbols)

    async def start_pool(self) -> bool:
        """Start the instruments' process pool now if the catalogue has a modelled
        instrument (otherwise it starts when one first trains); whether it started. A failure
        is logged: the pool is then started by the first instrument run, which reports it."""
        if self._executor is None:
            return False
        try:
            if not (await self.catalogue()).modelled():
                return False
            await self._executor.get()
        except Exception:
            log.exception("could not start the instruments' process pool ahead of time")
            return False
        log.info("instruments' process pool started (%d workers)", self._executor.workers)
        return True

    async def catalogue(self) -> Catalogue:
        async with self._pool.acquire() as conn:
            return Catalogue(await fetch_catalogue(conn))

    def warm_up(self) -> None:
        """Import the forecasting stack and fit each family once: the first run is fast."""
        frame = GeneratedData(seed=0).window(["WARMUP"], self._cfg.x_size)
        for cand in self.candidates:
            fit_frame(frame, ["WARMUP"], self._cfg.x_size, cand.family, cand.hyperparameters)

    async def close_interrupted(self) -> list[int]:
        async with self._pool.acquire() as conn:
            closed = await store.close_interrupted(conn)
        if closed:
            log.warning("closed %d interrupted run(s) as failed: %s", len(closed), closed)
        return closed

    async def wants(self, events: Sequence[BatchLoaded]) -> str | None:
        """Why these events need no run (``None``: they do). A batch that touched no metal
        and no catalogued instrument with a model, or only hours before every touched
        metal's production window (and no instrument), changes no window. The touched
        symbols are kept for the :meth:`run` that follows."""
        symbols = {metal_for(t).symbol for t in self._cfg.tickers}
        touched_all = {s for e in events for s in e.symbols}
        touched = touched_all & symbols
        modelled = {i.symbol for i in (await self.catalogue()).modelled()}
        instruments = touched_all & modelled
        self._pending = touched | instruments
        if not touched and not instruments:
            return "no metal in the batch"
        if instruments:
            return None
        newest = [e.last_hour for e in events if e.last_hour is not None]
        if not newest:
            return None
        async with self._pool.acquire() as conn:
            starts = await conn.fetch(
                """
                SELECT p.symbol, v.window_start FROM ml.production_models AS p
                JOIN ml.model_versions AS v ON v.id = p.model_version_id
                WHERE p.symbol = ANY($1::text[])
                """,
                sorted(touched),
            )
        known = {r["symbol"]: r["window_start"] for r in starts}
        if len(known) == len(touched) and max(newest) < min(known.values()):
            return f"only hours before the current windows (newest {max(newest).isoformat()})"
        return None

    async def run(
        self, trigger: str, batch_id: uuid.UUID | None = None, events: int = 0
    ) -> RunReport:
        report = await recorded_run(
            self._pool,
            self._cfg.work_dir,
            "run",
            self._train,
            trigger=trigger,
            batch_id=batch_id,
            events=events,
            family=",".join(c.name for c in self.candidates),
            x_size=self._cfg.x_size,
            y_size=self._cfg.y_size,
            candidates=[c.describe() for c in self.candidates],
        )
        log.info(
            "run %s %s: promoted %s, unchanged %s, failed %s in %.2f s",
            report.run_id,
            report.status,
            report.promoted,
            report.unchanged,
            report.failed,
            report.timings["total_s"],
        )
        await self._retention()
        return report

    async def _train(self, report: RunReport, work: Path) -> None:
        pending, self._pending = self._pending, None
        metals = {metal_for(t).symbol for t in self._cfg.tickers}
        t = time.perf_counter()
        need = self._cfg.x_size + self._cfg.backtest_origins + 1
        train_metals = pending is None or bool(pending & metals)
        async with self._pool.acquire() as conn:
            frame = (
                await fetch_history(conn, self._cfg.tickers, need)
                if train_metals
                else pd.DataFrame()
            )
            # The production versions of what this run trains (the metals all together).
            wanted = (
                None if pending is None else sorted(pending | (metals if train_metals else set()))
            )
            current = {v.symbol: v for v in await registry.production(conn, wanted)}
            catalogue = Catalogue(await fetch_catalogue(conn))
        report.timings["load_s"] = round(time.perf_counter() - t, 4)
        for key in ("backtest_s", "fit_s", "store_s"):
            report.timings[key] = 0.0
        report.timings["origins_fitted"] = 0
        report.timings["origins_reused"] = 0
        if train_metals:
            for ticker in self._cfg.tickers:
                symbol = metal_for(ticker).symbol
                column = frame[ticker] if ticker in frame.columns else pd.Series(dtype=float)
                await self._one(report, symbol, ticker, column.dropna(), current.get(symbol), work)
        instruments = [i for i in catalogue.modelled() if pending is None or i.symbol in pending]
        plans = {i.symbol: self.plan_for(i) for i in instruments}
        await self._instruments.train(report, instruments, plans, current, work)
        ends = [w["end"] for w in report.windows.values() if w.get("end")]
        starts = [w["start"] for w in report.windows.values() if w.get("start")]
        report.window_start = min(starts) if starts else None
        report.window_end = max(ends) if ends else None
        done = len(report.versions) + len(report.unchanged)
        if not done:
            report.status = "failed"
            report.error = "no metal trained: " + "; ".join(
                f"{s}: {r}" for s, r in report.failed.items()
            )
        elif report.failed:
            report.status = "partial"
        elif not report.versions:
            report.status = "unchanged"
        else:
            report.status = "succeeded"

    def plan_for(self, inst: Instrument) -> Plan:
        assert inst.model is not None
        x_size, candidates, rules, cfg = instrument_plan(self._cfg, inst.model)
        return Plan(x_size, candidates, rules, cfg, inst.cadence)

    async def _one(
        self,
        report: RunReport,
        symbol: str,
        ticker: str,
        observed: pd.Series,
        champion_info: VersionInfo | None,
        work: Path,
        plan: Plan | None = None,
    ) -> None:
        plan = plan or self._metal_plan
        x = plan.x_size
        values = observed.to_numpy(dtype=float)
        stamps = [ts.to_pydatetime() for ts in pd.DatetimeIndex(observed.index)]
        window = values[-x:]
        win: dict[str, Any] = {
            "start": stamps[-x] if len(stamps) >= x else (stamps[0] if stamps else None),
            "end": stamps[-1] if stamps else None,
        }
        win["hours"] = span_hours(win["start"], win["end"])
        win["entries"] = min(len(values), x)
        report.windows[symbol] = win
        if len(values) < x:
            await self._failed(
                report,
                symbol,
                f"too few rows: {len(values)} observed {plan.cadence} values, need {x}",
                win,
            )
            return
        digest = window_hash(window)

        # 0. the production version already fits this very window: nothing moved
        champion = champion_of(champion_info, plan.candidates)
        if (
            champion_info is not None
            and champion_info.window_hash == digest
            and champion is not None
            and champion.key in {c.key for c in plan.candidates}
        ):
            detail: dict[str, Any] = {
                "action": "unchanged",
                "chosen": champion.name,
                "window_hash": digest,
            }
            same = Decision(
                "refit", champion, champion, False, "the production version fits this window"
            )
            report.decisions[symbol] = same.reason
            await self._unchanged(report, symbol, champion_info, same, win, detail)
            return

        # 1. backtest the candidates and the champion's configuration on the same origins
        scored = list(plan.candidates)
        if champion is not None and champion.key not in {c.key for c in scored}:
            scored.append(champion)
        series = Series(values, stamps)
        t = time.perf_counter()
        indices = series.origins(x, plan.cfg.backtest_origins)
        since = stamps[indices[0]] if indices else stamps[-1]
        async with self._pool.acquire() as conn:
            cache = await store.load_cache(conn, symbol, [c.key for c in scored], since)
        if plan is self._metal_plan or self._executor is None:
            bt, scores = await asyncio.to_thread(
                backtest_and_score, plan.cfg, scored, series, cache
            )
        else:
            bt, scores = await asyncio.get_running_loop().run_in_executor(
                await self._executor.get(),
                functools.partial(backtest_and_score, plan.cfg, scored, series, cache),
            )
        async with self._pool.acquire() as conn, conn.transaction():
            await store.save_cache(conn, symbol, bt.new)
            await store.record_backtests(conn, report.run_id, symbol, scores.values())
        report.timings["backtest_s"] += round(time.perf_counter() - t, 4)
        report.symbol_timings.setdefault(symbol, {})["backtest_s"] = time.perf_counter() - t
        log.info(
            "%s backtest: %d origin forecasts fitted, %d reused, in %.2f s",
            symbol,
            bt.fitted,
            bt.reused,
            time.perf_counter() - t,
        )
        report.timings["origins_fitted"] += bt.fitted
        report.timings["origins_reused"] += bt.reused

        # 2. champion / challenger (without scores: too little history, the first candidate)
        async with self._pool.acquire() as conn:
            pin = await registry.pin(conn, symbol)
        pinned = None if pin is None else f"{pin.pinned_by} at v{pin.version}"
        decision = choose(plan.candidates, scores, champion, plan.rules, pinned, len(values), x)
        chosen_score = scores.get(decision.chosen.key)
        detail = {
            "action": decision.action,
            "chosen": decision.chosen.name,
            "best": decision.best.name,
            "reason": decision.reason,
            "window_hash": digest,
            "mase": {s.candidate["name"]: s.summary.get("mase") for s in scores.values()},
        }
        report.decisions[symbol] = decision.reason

        # 3. the same configuration on the same window: nothing new
        async with self._pool.acquire() as conn:
            existing = await registry.find_fit(conn, symbol, decision.chosen.key, digest)
        if existing is not None:
            await self._unchanged(report, symbol, existing, decision, win, detail)
            return

        # 4. fit, check, upload, record, promote
        t = time.perf_counter()
        family, hyper = decision.chosen.family, dict(decision.chosen.hyperparameters)
        if plan is not self._metal_plan and self._executor is not None:
            # An instrument: fit, save and reload-check in the pool too (CPU work off the
            # event loop's process); the file is in ``work``, the forecaster stays there.
            result, saved, problem, model_class = await asyncio.get_running_loop().run_in_executor(
                await self._executor.get(),
                functools.partial(fit_and_save, ticker, observed, x, family, hyper, work),
            )
            report.timings["fit_s"] += round(time.perf_counter() - t, 4)
            report.symbol_timings.setdefault(symbol, {})["fit_s"] = time.perf_counter() - t
            if not result.ok:
                await self._failed(report, symbol, result.reason or "not trained", win, detail)
                return
            t = time.perf_counter()
        else:
            result = await asyncio.to_thread(
                fit_series, ticker, observed, x, get_family(family), hyper
            )
            report.timings["fit_s"] += round(time.perf_counter() - t, 4)
            report.symbol_timings.setdefault(symbol, {})["fit_s"] = time.perf_counter() - t
            if not result.ok:
                await self._failed(report, symbol, result.reason or "not trained", win, detail)
                return
            model_class = type(result.forecaster).__name__
            t = time.perf_counter()
            saved, problem = await asyncio.to_thread(self._save_and_check, result, work)
        if problem is not None or saved is None:
            await self._failed(report, symbol, f"artifact check failed: {problem}", win, detail)
            return
        calibration = dict(chosen_score.calibration) if chosen_score else {}
        if calibration:
            calibration["scale"] = window_scale(window)
        await self._publish_version(
            report,
            symbol,
            decision,
            result,
            saved,
            digest,
            chosen_score,
            calibration,
            win,
            detail,
            model_class,
        )
        report.timings["store_s"] += round(time.perf_counter() - t, 4)

    @staticmethod
    def _save_and_check(result: FitResult, work: Path) -> tuple[SavedArtifact | None, str | None]:
        saved = save_forecaster(result.forecaster, work, result.ticker)
        return saved, check_artifact(saved.path, expected_sha256=saved.sha256)

    async def _publish_version(
        self,
        report: RunReport,
        symbol: str,
        decision: Decision,
        result: FitResult,
        saved: SavedArtifact,
        digest: str,
        chosen_score: Score | None,
        calibration: dict[str, Any],
        win: dict[str, Any],
        detail: dict[str, Any],
        model_class: str,
    ) -> None:
        bucket = self._settings.s3.models_bucket
        async with self._pool.acquire() as conn, conn.transaction():
            # One writer per symbol at a time: versions are numbered without gaps.
            version = await registry.reserve_version(conn, symbol)
            uri = await asyncio.to_thread(
                registry.upload_artifact,
                self._s3,
                bucket,
                self._cfg.models_prefix,
                symbol,
                version,
                saved.path,
                sha256=saved.sha256,
                run_id=report.run_id,
            )
            new = registry.version_of_fit(
                result,
                saved,
                symbol=symbol,
                version=version,
                run_id=report.run_id,
                model_class=model_class,
                artifact_uri=uri,
                candidate=decision.chosen.name,
                candidate_key=decision.chosen.key,
                window_hash=digest,
                backtest=jsonable(chosen_score.as_json()) if chosen_score else {},
                calibration=calibration,
                decision=decision.reason,
            )
            version_id = (await registry.record_versions(conn, [new]))[symbol]
            move = None
            if decision.move_pointer:
                move = await promote_version(
                    conn, report.run_id, symbol, version_id, decision.reason
                )
            status = "promoted" if move is not None else "pinned"
            reason = decision.reason
            if decision.move_pointer and move is None:
                reason = f"pinned meanwhile: recorded, not promoted ({decision.reason})"
            await store.record_result(
                conn,
                report.run_id,
                symbol,
                status,
                reason=reason,
                version_id=version_id,
                window=win,
                decision=detail,
            )
        report.versions[symbol] = version
        if move is not None:
            report.promoted[symbol] = version
            report.moves.append(move)

    async def _unchanged(
        self,
        report: RunReport,
        symbol: str,
        existing: VersionInfo,
        decision: Decision,
        win: dict[str, Any],
        detail: dict[str, Any],
    ) -> None:
        reason = f"v{existing.version} already fits this window with {decision.chosen.name}"
        async with self._pool.acquire() as conn, conn.transaction():
            move = None
            if decision.move_pointer and not existing.in_production:
                move = await promote_version(
                    conn, report.run_id, symbol, existing.id, decision.reason
                )
            await store.record_result(
                conn,
                report.run_id,
                symbol,
                "unchanged",
                reason=reason,
                version_id=existing.id,
                window=win,
                decision=detail,
            )
        report.unchanged.append(symbol)
        if move is not None:
            report.promoted[symbol] = existing.version
            report.moves.append(move)

    async def _failed(
        self,
        report: RunReport,
        symbol: str,
        reason: str,
        win: dict[str, Any],
        detail: dict[str, Any] | None = None,
    ) -> None:
        log.warning("run %s: %s not trained: %s", report.run_id, symbol, reason)
        report.failed[symbol] = reason
        async with self._pool.acquire() as conn:
            await store.record_result(
                conn, report.run_id, symbol, "failed", reason=reason, window=win, decision=detail
            )

    async def _retention(self) -> None:
        hours = self._cfg.retention_hours
        if hours <= 0:
            return
        try:
            async with self._pool.acquire() as conn:
                deleted = await registry.retention(
                    conn, self._s3, timedelta(hours=hours).total_seconds()
                )
        except Exception:  # retention is housekeeping: never fail a run for it
            log.exception("retention failed")
            return
        if deleted:
            log.info("retention deleted %d version(s): %s", len(deleted), deleted)

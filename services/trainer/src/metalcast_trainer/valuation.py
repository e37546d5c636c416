"""The gold valuation model's retrain (docs/valuation.md), beside the per-symbol runner.

A batch-loaded event that touched gold (its ticks or bars) or, with
``table="macro.observations"``, a series of ``macro.series`` retrains it: one run in
``ml.training_runs`` under the key ``XAU-VAL``. The run reads daily gold and every vintage,
evaluates naive, ARIMA and LightGBM on the same origins
(:func:`metalcast_models.valuation.evaluate`), records the LightGBM version every time (its
grid search, importances, fitted and backtest values in ``ml.valuation_fits`` and
``ml.valuation_points``), and moves the ``XAU-VAL`` pointer to whichever candidate the
champion/challenger rules chose: the LightGBM version only if it won; otherwise the winning
baseline, fitted on the daily window like any instrument. A failed fit is a failed run with
its cause; while there are too few daily closes for a first fit, no run starts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import numpy as np
import pandas as pd

from metalcast_core import BatchLoaded
from metalcast_models import registry, sha256_of
from metalcast_models.backtest import Candidate, make_candidate, window_hash
from metalcast_models.fitting import jsonable
from metalcast_models.valuation import (
    ARTIFACT_NAME,
    FAMILY,
    SYMBOL,
    ValuationConfig,
    ValuationResult,
    evaluate,
    load_booster,
)
from metalcast_models.valuation.data import (
    LEVEL_UNITS,
    fetch_daily_closes,
    fetch_series,
    fetch_vintages,
)
from metalcast_trainer import store
from metalcast_trainer.config import TrainerSettings
from metalcast_trainer.evaluation import fit_and_save
from metalcast_trainer.runner import RunReport, promote_version, recorded_run

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)


def _midnight(day: Any) -> datetime:
    return datetime.combine(pd.Timestamp(day).date(), datetime.min.time(), UTC)


class ValuationTrainer:
    def __init__(
        self,
        settings: TrainerSettings,
        pool: asyncpg.Pool,
        s3: S3Client,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        """``today``: the current UTC day, whose close is not final yet (never trained on)."""
        self._settings = settings
        self._section = settings.trainer.valuation
        self._pool = pool
        self._s3 = s3
        self._today = today

    @property
    def config(self) -> ValuationConfig:
        return self._section.config()

    async def wants(self, events: Sequence[BatchLoaded]) -> str | None:
        """Why these events retrain the valuation model (``None``: they do not): a load of a
        feature series, or a gold load that completes a day after the newest fit's last."""
        if not self._section.enabled:
            return None
        gold = self._section.gold_symbol
        async with self._pool.acquire() as conn:
            touched = [e for e in events if e.table != "macro.observations" and gold in e.symbols]
            macro = {s for e in events if e.table == "macro.observations" for s in e.symbols}
            features = {s.series_id for s in await fetch_series(conn)} & macro if macro else set()
            if touched and not features:
                fitted_to = await conn.fetchval(
                    """
                    SELECT max(window_end) FROM ml.model_versions
                    WHERE symbol = $1 AND family = $2 AND deleted_at IS NULL
                    """,
                    SYMBOL,
                    FAMILY,
                )
                loaded = [e.last_hour.date() for e in touched if e.last_hour is not None]
                complete = self._today() - timedelta(days=1)  # the newest final close
                newest = min(max(loaded), complete) if loaded else complete
                if fitted_to is not None and newest <= fitted_to.date():
                    touched = []  # no day completed since the newest fit
            if not touched and not features:
                return None
            days = int(
                await conn.fetchval(
                    "SELECT count(*) FROM analytics.instrument_prices_daily WHERE symbol = $1",
                    gold,
                )
            )
        cfg = self.config
        need = cfg.min_train + cfg.folds + cfg.origins + 1
        if days < need:
            log.info(
                "valuation: %d daily %s closes, a first fit needs %d: no run", days, gold, need
            )
            return None
        what = [f"{gold} loaded"] if touched else []
        if features:
            what.append("macro series " + ", ".join(sorted(features)))
        return " and ".join(what)

    async def run(
        self, trigger: str, batch_id: uuid.UUID | None = None, events: int = 0
    ) -> RunReport:
        cfg = self.config

        async def failed(report: RunReport) -> None:
            assert report.error is not None
            report.failed[SYMBOL] = report.error
            async with self._pool.acquire() as conn:
                await store.record_result(
                    conn, report.run_id, SYMBOL, "failed", reason=report.error
                )

        report = await recorded_run(
            self._pool,
            self._settings.trainer.work_dir,
            "valuation",
            lambda report, work: self._train(report, cfg, work),
            trigger=trigger,
            batch_id=batch_id,
            events=events,
            family=FAMILY,
            x_size=cfg.x_size,
            y_size=1,
            candidates=[c.describe() for c in cfg.candidates()],
            on_failure=failed,
        )
        log.info(
            "valuation run %s %s in %.1f s",
            report.run_id,
            report.status,
            report.timings["total_s"],
        )
        return report

    async def _train(self, report: RunReport, cfg: ValuationConfig, work: Path) -> None:
        t = time.perf_counter()
        async with self._pool.acquire() as conn:
            series = await fetch_series(conn)
            vintages = await fetch_vintages(conn, [s.series_id for s in series])
            closes = await fetch_daily_closes(conn, self._section.gold_symbol)
            closes = closes[[d < self._today() for d in closes.index]]  # today's is not final
            current = {v.symbol: v for v in await registry.production(conn)}.get(SYMBOL)
            pin = await registry.pin(conn, SYMBOL)
            champion = self._champion(cfg, current)
            keys = [c.key for c in cfg.candidates()]
            cache = await store.load_cache(conn, SYMBOL, keys, datetime(1970, 1, 1, tzinfo=UTC))
        report.timings["load_s"] = round(time.perf_counter() - t, 4)
        lags = {s.series_id: s.lag_days for s in series}
        gbm = cfg.gbm_candidate()
        digest = inputs_hash(closes, vintages, lags)
        async with self._pool.acquire() as conn:
            existing = await registry.find_fit(conn, SYMBOL, gbm.key, digest)
        if existing is not None:  # the same data again (a replayed load): nothing to refit
            reason = f"v{existing.version} was fitted on these very inputs"
            report.unchanged.append(SYMBOL)
            report.decisions[SYMBOL] = reason
            async with self._pool.acquire() as conn:
                await store.record_result(
                    conn,
                    report.run_id,
                    SYMBOL,
                    "unchanged",
                    reason=reason,
                    version_id=existing.id,
                )
            report.status = "unchanged"
            return
        levels = {s.series_id for s in series if s.units in LEVEL_UNITS}
        t = time.perf_counter()
        result = await asyncio.to_thread(
            evaluate,
            closes,
            vintages,
            lags,
            cfg,
            champion=champion,
            pinned=None if pin is None else f"{pin.pinned_by} at v{pin.version}",
            rules=self._settings.trainer.rules(),
            cache=cache,
            levels=levels,
        )
        report.timings["evaluate_s"] = round(time.perf_counter() - t, 4)
        days = result.fitted.index
        report.window_start, report.window_end = _midnight(days[0]), _midnight(days[-1])
        win = {"start": report.window_start, "end": report.window_end, "hours": None}
        report.windows[SYMBOL] = {k: v for k, v in win.items() if v is not None}
        async with self._pool.acquire() as conn, conn.transaction():
            await store.save_cache(conn, SYMBOL, result.baseline_run.new)
            await store.record_backtests(conn, report.run_id, SYMBOL, result.scores.values())
        decision = result.decision
        promote_gbm = decision.move_pointer and decision.chosen.key == gbm.key
        detail: dict[str, Any] = {
            "action": decision.action,
            "chosen": decision.chosen.name,
            "best": decision.best.name,
            "reason": decision.reason,
            "backtest": result.summary(),
        }
        t = time.perf_counter()
        gbm_version, gbm_id = await self._record_gbm(report, result, gbm, digest, promote_gbm, work)
        detail["lightgbm_version"] = gbm_version
        served_id = gbm_id if promote_gbm else None
        if decision.move_pointer and not promote_gbm:
            served_id = await self._serve_baseline(report, result, decision.chosen, work)
        report.timings["store_s"] = round(time.perf_counter() - t, 4)
        report.decisions[SYMBOL] = decision.reason
        status = "promoted" if SYMBOL in report.promoted else "kept"
        async with self._pool.acquire() as conn:
            await store.record_result(
                conn,
                report.run_id,
                SYMBOL,
                status,
                reason=decision.reason,
                version_id=served_id or gbm_id,
                window=win,
                decision=jsonable(detail),
            )
        report.status = "succeeded"

    @staticmethod
    def _champion(cfg: ValuationConfig, info: registry.VersionInfo | None) -> Candidate | None:
        if info is None:
            return None
        for cand in cfg.candidates():
            if cand.key == info.candidate_key:
                return cand
        if info.family == FAMILY:
            return None  # an older LightGBM configuration: the current one replaces it
        try:
            return make_candidate(info.family, cfg.x_size, info.hyperparameters, info.candidate)
        except ValueError:
            return None

    async def _upload(self, path: Path, sha256: str, version: int, run_id: int) -> str:
        return await asyncio.to_thread(
            registry.upload_artifact,
            self._s3,
            self._settings.s3.models_bucket,
            self._settings.trainer.models_prefix,
            SYMBOL,
            version,
            path,
            sha256=sha256,
            run_id=run_id,
        )

    async def _record_gbm(
        self,
        report: RunReport,
        result: ValuationResult,
        gbm: Candidate,
        digest: str,
        promote: bool,
        work: Path,
    ) -> tuple[int, int]:
        """The LightGBM version, always; the pointer moves to it only if it won."""
        fit = result.fit
        path = work / ARTIFACT_NAME
        fit.save(path)
        rows = result.table.frame.loc[result.fitted.index[-5:], list(fit.features)]
        again = load_booster(path).predict(rows.to_numpy(dtype=float), num_threads=1)
        if not np.allclose(again, fit.booster.predict(rows.to_numpy(dtype=float))):
            raise RuntimeError("the saved booster does not predict as the fitted one")
        size = path.stat().st_size
        sha = sha256_of(path)
        days = result.fitted.index
        chosen = result.scores.get(gbm.key)
        async with self._pool.acquire() as conn, conn.transaction():
            version = await registry.reserve_version(conn, SYMBOL)
            uri = await self._upload(path, sha, version, report.run_id)
            search = fit.search.as_json() if fit.search else {}
            version_id = await registry.record_version(
                conn,
                symbol=SYMBOL,
                version=version,
                run_id=report.run_id,
                family=FAMILY,
                model_class="lightgbm.Booster",
                hyperparameters=jsonable(fit.params),
                fitted_params=jsonable(fit.importances),
                metrics=jsonable({"cv_mae": search.get("best_mae"), "n_train": fit.n_train}),
                window_start=_midnight(days[0]),
                window_end=_midnight(days[-1]),
                n_observations=fit.n_train,
                artifact_uri=uri,
                sha256=sha,
                size_bytes=size,
                candidate=gbm.name,
                candidate_key=gbm.key,
                window_hash=digest,
                backtest=jsonable(chosen.as_json()) if chosen else {},
                decision=result.decision.reason,
            )
            await self._record_fit(conn, version_id, report.run_id, result, promote)
            if promote:
                move = await promote_version(
                    conn, report.run_id, SYMBOL, version_id, result.decision.reason
                )
                if move is not None:
                    report.promoted[SYMBOL] = version
                    report.moves.append(move)
        report.versions[SYMBOL] = version
        return version, version_id

    @staticmethod
    async def _record_fit(
        conn: asyncpg.Connection,
        version_id: int,
        run_id: int,
        result: ValuationResult,
        promoted: bool,
    ) -> None:
        fit = result.fit
        search = fit.search.as_json() if fit.search else {}
        search["backtest_search"] = fit.extra.get("backtest_search")
        await conn.execute(
            """
            INSERT INTO ml.valuation_fits
                (model_version_id, symbol, run_id, features, feature_ranges, importances,
                 search, backtest, decision, promoted, forecast)
            VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7::jsonb, $8::jsonb, $9, $10,
                    $11::jsonb)
            """,
            version_id,
            SYMBOL,
            run_id,
            json.dumps(list(fit.features)),
            json.dumps(jsonable({k: list(v) for k, v in fit.ranges.items()})),
            json.dumps(jsonable(fit.importances)),
            json.dumps(jsonable(search)),
            json.dumps(jsonable(result.summary())),
            result.decision.reason,
            promoted,
            json.dumps(jsonable({**result.forecast, "date": result.forecast["date"].isoformat()})),
        )
        fitted = [
            ("fitted", day, _float(r.actual), float(r.fitted), float(r.fitted), None, False, None)
            for day, r in result.fitted.iterrows()
        ]
        bt = backtest_rows(result.backtest)
        await conn.copy_records_to_table(
            "valuation_points",
            schema_name="ml",
            columns=[
                "model_version_id",
                "kind",
                "date",
                "actual",
                "value",
                "model_value",
                "naive",
                "fallback",
                "fallback_reason",
            ],
            records=[(version_id, *row) for row in fitted + bt],
        )

    async def _serve_baseline(
        self, report: RunReport, result: ValuationResult, chosen: Candidate, work: Path
    ) -> int | None:
        """The winning baseline on the daily window: reuse its version if it already fits
        this window, else fit, save, record; then move the pointer (a pin holds it)."""
        series = result.series
        observed = pd.Series(series.values, index=pd.DatetimeIndex(list(series.stamps)))
        digest = window_hash(series.values[-chosen.x_size :])
        async with self._pool.acquire() as conn:
            existing = await registry.find_fit(conn, SYMBOL, chosen.key, digest)
        if existing is not None:
            version_id, version = existing.id, existing.version
        else:
            fitted, saved, problem, model_class = await asyncio.to_thread(
                fit_and_save,
                SYMBOL,
                observed,
                chosen.x_size,
                chosen.family,
                dict(chosen.hyperparameters),
                work,
            )
            if not fitted.ok or saved is None or problem is not None:
                raise RuntimeError(
                    f"{chosen.name} on daily gold: {fitted.reason or problem or 'not saved'}"
                )
            score = result.scores.get(chosen.key)
            async with self._pool.acquire() as conn, conn.transaction():
                version = await registry.reserve_version(conn, SYMBOL)
                uri = await self._upload(saved.path, saved.sha256, version, report.run_id)
                new = registry.version_of_fit(
                    fitted,
                    saved,
                    symbol=SYMBOL,
                    version=version,
                    run_id=report.run_id,
                    model_class=model_class,
                    artifact_uri=uri,
                    candidate=chosen.name,
                    candidate_key=chosen.key,
                    window_hash=digest,
                    backtest=jsonable(score.as_json()) if score else {},
                    calibration=score.calibration if score else {},
                    decision=result.decision.reason,
                )
                version_id = (await registry.record_versions(conn, [new]))[SYMBOL]
            report.versions[SYMBOL] = version
        async with self._pool.acquire() as conn, conn.transaction():
            move = await promote_version(
                conn, report.run_id, SYMBOL, version_id, result.decision.reason
            )
        if move is not None:
            report.promoted[SYMBOL] = version
            report.moves.append(move)
        return version_id


def backtest_rows(backtest: pd.DataFrame) -> list[tuple[Any, ...]]:
    """The walk-forward forecasts as ``ml.valuation_points`` rows (kind ``backtest``); a
    missing reason (``None`` or pandas' ``NaN``) is NULL."""
    return [
        (
            "backtest",
            r["date"],
            float(r["actual"]),
            float(r["price"]),
            float(r["model_price"]),
            float(r["naive"]),
            bool(r["fallback"]),
            r["fallback_reason"] if isinstance(r["fallback_reason"], str) else None,
        )
        for r in backtest.to_dict("records")
    ]


def inputs_hash(closes: pd.Series, vintages: pd.DataFrame, lags: dict[str, int]) -> str:
    """A content hash of everything a valuation fit reads: the LightGBM version's
    ``window_hash`` (the same inputs again: the same version)."""
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(closes, index=True).to_numpy().tobytes())
    digest.update(pd.util.hash_pandas_object(vintages, index=False).to_numpy().tobytes())
    digest.update(json.dumps(lags, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _float(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None

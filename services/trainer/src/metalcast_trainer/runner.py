"""One training run: read the window, fit one model per metal, check each file reloads and
predicts, upload it, record the version and promote it. Bad data for one metal is recorded
with its reason and never stops the others; production stays where it was for that metal."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from metalcast_core import metal_for
from metalcast_models import (
    FitResult,
    FrameTrainingData,
    Model,
    PostgresTrainingData,
    SavedArtifact,
    check_artifact,
    registry,
    save_forecaster,
)
from metalcast_trainer.config import TrainerSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    run_id: int
    status: str
    promoted: dict[str, int] = field(default_factory=dict)  # symbol -> version
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> reason
    window_start: datetime | None = None
    window_end: datetime | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None


class TrainingRunner:
    def __init__(self, settings: TrainerSettings, pool: asyncpg.Pool, s3: S3Client) -> None:
        self._settings = settings
        self._cfg = settings.trainer
        self._pool = pool
        self._s3 = s3
        self._data = PostgresTrainingData(settings.postgres.url)

    def warm_up(self) -> None:
        """Import the forecasting stack and fit once, so the first real run is fast."""
        Model(
            self._cfg.tickers[:1],
            self._cfg.x_size,
            self._cfg.y_size,
            self._cfg.family,
            self._cfg.hyperparameters,
        ).train(use_generated_data=True)

    async def run(
        self, trigger: str, batch_id: uuid.UUID | None = None, events: int = 0
    ) -> RunReport:
        started = time.perf_counter()
        async with self._pool.acquire() as conn:
            run_id = await conn.fetchval(
                """
                INSERT INTO ml.training_runs
                    (trigger, trigger_batch_id, trigger_events, family, x_size, y_size)
                VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
                """,
                trigger,
                batch_id,
                events,
                self._cfg.family,
                self._cfg.x_size,
                self._cfg.y_size,
            )
        report = RunReport(run_id=run_id, status="running")
        work = Path(tempfile.mkdtemp(prefix=f"run{run_id}-", dir=self._work_dir()))
        try:
            await self._train(report, work)
        except Exception as exc:
            log.exception("training run %s failed", run_id)
            report.status = "failed"
            report.error = f"{type(exc).__name__}: {exc}"
        finally:
            shutil.rmtree(work, ignore_errors=True)
        report.timings["total_s"] = round(time.perf_counter() - started, 4)
        await self._finish(report)
        log.info(
            "run %s %s: promoted %s, failed %s in %.2f s",
            run_id,
            report.status,
            report.promoted,
            report.failed,
            report.timings["total_s"],
        )
        return report

    def _work_dir(self) -> Path:
        self._cfg.work_dir.mkdir(parents=True, exist_ok=True)
        return self._cfg.work_dir

    async def _train(self, report: RunReport, work: Path) -> None:
        t = time.perf_counter()
        frame = await self._data.fetch(self._cfg.tickers, self._cfg.x_size)
        report.timings["load_s"] = round(time.perf_counter() - t, 4)
        if len(frame.index):
            report.window_start = frame.index[0].to_pydatetime()
            report.window_end = frame.index[-1].to_pydatetime()

        t = time.perf_counter()
        model = Model(
            self._cfg.tickers,
            self._cfg.x_size,
            self._cfg.y_size,
            self._cfg.family,
            self._cfg.hyperparameters,
            data_source=FrameTrainingData(frame),
        )
        results = await asyncio.to_thread(model.train)
        report.timings["fit_s"] = round(time.perf_counter() - t, 4)

        t = time.perf_counter()
        for ticker in self._cfg.tickers:
            symbol = metal_for(ticker).symbol
            result = results[ticker]
            if not result.ok:
                await self._record_failure(report, symbol, result.reason or "not trained")
                continue
            saved, problem = await asyncio.to_thread(self._save_and_check, result, work)
            if problem is not None:
                await self._record_failure(report, symbol, f"artifact check failed: {problem}")
                continue
            assert saved is not None
            report.promoted[symbol] = await self._publish_version(report, symbol, result, saved)
        report.timings["store_s"] = round(time.perf_counter() - t, 4)
        if not report.promoted:
            report.status = "failed"
            report.error = "no metal trained: " + "; ".join(
                f"{s}: {r}" for s, r in report.failed.items()
            )
        else:
            report.status = "succeeded" if not report.failed else "partial"

    @staticmethod
    def _save_and_check(result: FitResult, work: Path) -> tuple[SavedArtifact | None, str | None]:
        saved = save_forecaster(result.forecaster, work, result.ticker)
        return saved, check_artifact(saved.path, expected_sha256=saved.sha256)

    async def _publish_version(
        self, report: RunReport, symbol: str, result: FitResult, saved: SavedArtifact
    ) -> int:
        bucket = self._settings.s3.models_bucket
        async with self._pool.acquire() as conn, conn.transaction():
            # One writer per symbol at a time: versions are numbered without gaps.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('model:' || $1))", symbol)
            version = await registry.next_version(conn, symbol)
            key = f"{self._cfg.models_prefix}{symbol}/{version}/{saved.path.name}"
            await asyncio.to_thread(
                self._s3.upload_file,
                str(saved.path),
                bucket,
                key,
                ExtraArgs={"Metadata": {"sha256": saved.sha256, "run-id": str(report.run_id)}},
            )
            assert result.window_start is not None
            assert result.window_end is not None
            version_id = await registry.record_version(
                conn,
                symbol=symbol,
                version=version,
                run_id=report.run_id,
                family=result.family,
                model_class=type(result.forecaster).__name__,
                hyperparameters=result.hyperparameters,
                fitted_params=_plain(result.params),
                metrics=_plain(result.metrics),
                window_start=result.window_start,
                window_end=result.window_end,
                n_observations=result.n_obs,
                artifact_uri=f"s3://{bucket}/{key}",
                sha256=saved.sha256,
                size_bytes=saved.size_bytes,
            )
            await registry.move_pointer(
                conn,
                symbol,
                version_id,
                action="promote",
                by="trainer",
                note=f"run {report.run_id}",
            )
            await _record_result(conn, report.run_id, symbol, "promoted", version_id=version_id)
        return version

    async def _record_failure(self, report: RunReport, symbol: str, reason: str) -> None:
        log.warning("run %s: %s not trained: %s", report.run_id, symbol, reason)
        report.failed[symbol] = reason
        async with self._pool.acquire() as conn:
            await _record_result(conn, report.run_id, symbol, "failed", reason=reason)

    async def _finish(self, report: RunReport) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                """
                UPDATE ml.training_runs
                SET status = $2, error = $3, window_start = $4, window_end = $5,
                    finished_at = now(), timings = $6::jsonb
                WHERE id = $1
                """,
                report.run_id,
                report.status,
                report.error,
                report.window_start,
                report.window_end,
                json.dumps(report.timings),
            )


async def _record_result(
    conn: asyncpg.Connection,
    run_id: int,
    symbol: str,
    status: str,
    *,
    reason: str | None = None,
    version_id: int | None = None,
) -> None:
    """What a run did for one symbol: ``promoted`` (with its version) or ``failed`` (why)."""
    await conn.execute(
        """
        INSERT INTO ml.training_results (run_id, symbol, status, reason, model_version_id)
        VALUES ($1, $2, $3, $4, $5)
        """,
        run_id,
        symbol,
        status,
        reason,
        version_id,
    )


def _plain(value: Any) -> Any:
    """A JSON-safe copy: non-finite floats (NaN, infinities) become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

"""Recording a trained volume model in the model registry, beside the forecasting models:
a row in ``ml.training_runs`` (trigger ``bulk``), a version of symbol ``VOLUME`` in
``ml.model_versions`` with its file in the models bucket
(``models/VOLUME/<version>/volume.lgb.txt``), the run's result in ``ml.training_results``
and the production pointer moved (a pinned pointer is left alone, ``models.production.v1``
announced) when the version is the first, or when its test MAE relative to the naive
baseline (``mae_ratio``, comparable across test periods) is no worse than production's."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from metalcast_bulk.train import TrainResult, utc_midnight
from metalcast_core import PRODUCTION_CHANGED, KafkaSettings, publish_once
from metalcast_models import registry, sha256_of
from metalcast_models.fitting import jsonable
from metalcast_models.registry import PointerMove
from metalcast_models.volume import VOLUME_FAMILY, VOLUME_SYMBOL

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recorded:
    training_run_id: int
    version: int
    version_id: int
    artifact_uri: str
    promoted: bool
    decision: str
    move: PointerMove | None


async def record(
    conn: asyncpg.Connection,
    s3: S3Client,
    bucket: str,
    prefix: str,
    result: TrainResult,
    symbol: str = VOLUME_SYMBOL,
) -> Recorded:
    run_id = int(
        await conn.fetchval(
            """
            INSERT INTO ml.training_runs (trigger, family, x_size, y_size, window_start,
                                          window_end, candidates)
            VALUES ('bulk', $1, 2, 1, $2, $3, $4::jsonb) RETURNING id
            """,
            VOLUME_FAMILY,
            utc_midnight(result.train_start),
            utc_midnight(result.train_end),
            json.dumps(
                jsonable([{"name": VOLUME_FAMILY, "hyperparameters": result.hyperparameters}])
            ),
        )
    )
    try:
        recorded = await _version(conn, s3, bucket, prefix, result, symbol, run_id)
    except BaseException as exc:
        await conn.execute(
            "UPDATE ml.training_runs SET status = 'failed', error = $2, finished_at = now() "
            "WHERE id = $1",
            run_id,
            f"{type(exc).__name__}: {exc}",
        )
        raise
    await conn.execute(
        "UPDATE ml.training_runs SET status = 'succeeded', finished_at = now(), "
        "timings = $2::jsonb WHERE id = $1",
        run_id,
        json.dumps(jsonable(result.timings)),
    )
    return recorded


async def _version(
    conn: asyncpg.Connection,
    s3: S3Client,
    bucket: str,
    prefix: str,
    result: TrainResult,
    symbol: str,
    run_id: int,
) -> Recorded:
    m = jsonable(result.metrics)
    current = next((v for v in await registry.production(conn) if v.symbol == symbol), None)
    versus = (
        f"test MAE {m['mae']:.0f} vs naive {m['baseline_mae']:.0f} (ratio {m['mae_ratio']:.4f})"
    )
    if current is None:
        promote, decision = True, f"first {symbol} model: promoted; {versus}"
    else:
        prod_ratio = float(current.metrics.get("mae_ratio") or float("inf"))
        promote = m["mae_ratio"] <= prod_ratio
        verb = "promoted" if promote else "kept"
        decision = f"{verb}: {versus}; production v{current.version} had ratio {prod_ratio:.4f}"
    sha = sha256_of(result.model_path)
    async with conn.transaction():
        version = await registry.reserve_version(conn, symbol)
        uri = await asyncio.to_thread(
            registry.upload_artifact,
            s3,
            bucket,
            prefix,
            symbol,
            version,
            result.model_path,
            sha256=sha,
            run_id=run_id,
        )
        version_id = await registry.record_version(
            conn,
            symbol=symbol,
            version=version,
            run_id=run_id,
            family=VOLUME_FAMILY,
            model_class="lightgbm.Booster",
            hyperparameters=jsonable(result.hyperparameters),
            fitted_params={"features_run_id": result.features_run_id, "bulk_run_id": result.run_id},
            metrics={
                **m,
                "n_train": result.n_train,
                "n_test": result.n_test,
                "test_start": result.test_start.isoformat(),
                "test_end": result.test_end.isoformat(),
            },
            window_start=utc_midnight(result.train_start),
            window_end=utc_midnight(result.train_end),
            n_observations=result.n_train,
            artifact_uri=uri,
            sha256=sha,
            size_bytes=result.model_path.stat().st_size,
            candidate=VOLUME_FAMILY,
            decision=decision,
        )
        move = None
        if promote:
            move = await registry.move_pointer(
                conn,
                symbol,
                version_id,
                action="promote",
                by="bulk",
                note=f"bulk run {result.run_id}: {decision}",
                respect_pin=True,
            )
        status = "promoted" if move is not None else ("pinned" if promote else "kept")
        await conn.execute(
            """
            INSERT INTO ml.training_results (run_id, symbol, status, reason, model_version_id,
                                             window_start, window_end, decision)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
            """,
            run_id,
            symbol,
            status,
            decision,
            version_id,
            utc_midnight(result.train_start),
            utc_midnight(result.train_end),
            json.dumps({"metrics": m}),
        )
    return Recorded(run_id, version, version_id, uri, move is not None, decision, move)


async def announce(kafka: KafkaSettings, move: PointerMove, timeout_s: float = 10.0) -> bool:
    """``models.production.v1`` for the move; ``False`` if Kafka did not take it in time
    (the API also checks the pointer every few seconds)."""
    try:
        async with asyncio.timeout(timeout_s):
            await publish_once(kafka, PRODUCTION_CHANGED, [(move.symbol, move.event())])
    except Exception as exc:
        log.warning("models.production.v1 for %s not published: %s", move.symbol, exc)
        return False
    return True

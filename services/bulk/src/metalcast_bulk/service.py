"""The bulk pipeline's operations, each a stage: ingest (per kind, then publish), features,
train. Built by :mod:`metalcast_bulk.bootstrap`; the CLI, the DAG's tasks, tests and the
benchmark call these."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metalcast_bulk import ingest as ingest_stage
from metalcast_bulk.config import BulkSettings
from metalcast_bulk.engines import Engine
from metalcast_bulk.registry_io import Recorded, announce, record
from metalcast_bulk.stages import FeaturesResult, build_features
from metalcast_bulk.storage import Store, new_run_id
from metalcast_bulk.train import TrainResult, fit
from metalcast_bulk.validate import Report
from metalcast_core import connect

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass
class BulkService:
    settings: BulkSettings
    store: Store
    engine: Engine
    s3: S3Client | None  # the models bucket's client (train, record)

    def source(self, input_url: str) -> Store:
        return Store.open(input_url, self.settings.s3)

    # --- ingest -------------------------------------------------------------------------------

    def ingest(
        self, input_url: str, run_id: str | None = None, save_report: bool = True
    ) -> ingest_stage.IngestResult:
        result = ingest_stage.ingest(
            self.engine,
            self.source(input_url),
            "",
            self.store,
            run_id or new_run_id(),
            self.settings.bulk.max_price,
            self.settings.bulk.keep_runs,
        )
        if save_report:
            asyncio.run(self._save_report(result.run_id, input_url, result.report, result.seconds))
        return result

    def ingest_kind(self, input_url: str, run_id: str, kind: str) -> Report:
        return ingest_stage.ingest_kind(
            self.engine,
            self.source(input_url),
            "",
            self.store,
            run_id,
            kind,
            self.settings.bulk.max_price,
        )

    def publish(self, input_url: str, run_id: str, save_report: bool = True) -> Report:
        report, _ = ingest_stage.publish(
            self.store,
            run_id,
            self.settings.bulk.keep_runs,
            engine=self.engine.name,
            input=input_url,
        )
        if save_report:
            asyncio.run(self._save_report(run_id, input_url, report, None))
        return report

    async def _save_report(
        self, run_id: str, input_url: str, report: Report, seconds: float | None
    ) -> None:
        conn = await connect(self.settings.postgres)
        try:
            await conn.execute(
                """
                INSERT INTO bulk.ingest_runs (run_id, data_url, input, engine, files, rows_good,
                                              rows_quarantined, report, seconds)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9)
                ON CONFLICT (run_id) DO UPDATE SET report = EXCLUDED.report,
                    rows_good = EXCLUDED.rows_good, rows_quarantined = EXCLUDED.rows_quarantined,
                    files = EXCLUDED.files, published_at = now()
                """,
                run_id,
                self.store.url,
                input_url,
                self.engine.name,
                report.files,
                report.rows_good,
                report.rows_quarantined,
                json.dumps(report.as_json()),
                seconds,
            )
        finally:
            await conn.close()

    def report(self) -> dict[str, Any]:
        """The published prices run's report (``report.json``)."""
        run_id = self.store.current(ingest_stage.STAGE)["run_id"]
        value = self.store.read_json(
            f"{self.store.run_dir(ingest_stage.STAGE, run_id)}/report.json"
        )
        assert isinstance(value, dict)
        return value

    # --- features -----------------------------------------------------------------------------

    def features(self, run_id: str | None = None) -> FeaturesResult:
        return build_features(
            self.engine,
            self.store,
            run_id or new_run_id(),
            self.settings.bulk.window_rule(),
            self.settings.bulk.keep_runs,
        )

    # --- train --------------------------------------------------------------------------------

    def train(
        self, run_id: str | None = None, register: bool = True
    ) -> tuple[TrainResult, Recorded | None]:
        run_id = run_id or new_run_id()
        cfg = self.settings.bulk
        result = fit(self.store, run_id, cfg.work_dir / run_id, cfg.train_config())
        if not register:
            return result, None
        recorded = asyncio.run(self._record(result))
        return result, recorded

    async def _record(self, result: TrainResult) -> Recorded:
        assert self.s3 is not None, "recording a model needs the S3 client"
        conn = await connect(self.settings.postgres)
        try:
            recorded = await record(
                conn,
                self.s3,
                self.settings.s3.models_bucket,
                self.settings.bulk.models_prefix,
                result,
            )
        finally:
            await conn.close()
        if recorded.move is not None:
            await announce(self.settings.kafka, recorded.move)
        return recorded

"""The bulk pipeline's composition root: the data store (disk or S3), the engine and the S3
client of the models bucket, handed to :class:`BulkService`. The CLI, the DAG's tasks, tests
and the benchmark build the service here; ``engine``/``s3`` replace the real ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metalcast_bulk.config import BulkSettings
from metalcast_bulk.engines import Engine, make_engine
from metalcast_bulk.service import BulkService
from metalcast_bulk.storage import Store
from metalcast_core import make_s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def build_service(
    settings: BulkSettings, *, engine: Engine | None = None, s3: S3Client | None = None
) -> BulkService:
    cfg = settings.bulk
    return BulkService(
        settings=settings,
        store=Store.open(cfg.data_url, settings.s3),
        engine=engine or make_engine(cfg.engine, cfg.spark_master, cfg.workers, cfg.batch_files),
        s3=s3 if s3 is not None else make_s3_client(settings.s3),
    )

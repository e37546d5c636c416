"""The backup service's composition root: builds the S3 client (unless one is handed in), the
backups bucket's store, the live database's target and the Kafka log bounds a restore checks,
and hands them to the operations through one :class:`BackupContext`. The CLI, the DAG tasks,
tests and benchmarks build the service here; nothing below this module makes a client."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metalcast_backup.config import BackupSettings
from metalcast_backup.context import BackupContext
from metalcast_backup.dump import PgTarget
from metalcast_backup.positions import KafkaLogBounds, LogBounds
from metalcast_backup.service import BackupService
from metalcast_backup.store import BackupStore
from metalcast_core import make_s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def build_context(
    settings: BackupSettings,
    *,
    client: S3Client | None = None,
    live: PgTarget | None = None,
    log_bounds: LogBounds | None = None,
) -> BackupContext:
    client = client if client is not None else make_s3_client(settings.s3)
    return BackupContext(
        cfg=settings.backup,
        store=BackupStore(client, settings.s3.backups_bucket, settings.backup.prefix),
        live=live if live is not None else PgTarget(settings.postgres.url),
        models_bucket=settings.s3.models_bucket,
        log_bounds=log_bounds if log_bounds is not None else KafkaLogBounds(settings.kafka),
    )


def build_service(
    settings: BackupSettings,
    *,
    client: S3Client | None = None,
    live: PgTarget | None = None,
    log_bounds: LogBounds | None = None,
) -> BackupService:
    """The service the CLI and the DAG tasks use; the keywords replace the real adapters."""
    return BackupService(build_context(settings, client=client, live=live, log_bounds=log_bounds))

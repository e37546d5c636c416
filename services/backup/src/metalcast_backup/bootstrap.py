"""The backup service's composition root: builds the S3 clients (unless handed in), the
targets' stores (the backups bucket; the off-box bucket on its own endpoint when
``backup.offsite`` is set), the models bucket, the live database's target, the Kafka log
bounds a restore checks and the encryption keys, and hands them to the operations through one
:class:`BackupContext`. The CLI, the DAG tasks, tests and benchmarks build the service here;
nothing below this module makes a client."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metalcast_backup.config import BackupSettings
from metalcast_backup.context import BackupContext
from metalcast_backup.crypto import KeyRing, parse_key
from metalcast_backup.dump import PgTarget
from metalcast_backup.positions import KafkaLogBounds, LogBounds
from metalcast_backup.service import BackupService
from metalcast_backup.store import BackupStore, ModelsBucket
from metalcast_backup.targets import OFFSITE, PRIMARY, Target, Targets
from metalcast_core import make_s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def build_context(
    settings: BackupSettings,
    *,
    client: S3Client | None = None,
    live: PgTarget | None = None,
    log_bounds: LogBounds | None = None,
    offsite_client: S3Client | None = None,
) -> BackupContext:
    cfg = settings.backup
    client = client if client is not None else make_s3_client(settings.s3)
    targets = [
        Target(
            BackupStore(
                client,
                settings.s3.backups_bucket,
                cfg.prefix,
                name=PRIMARY,
                endpoint_url=settings.s3.endpoint_url,
            )
        )
    ]
    if cfg.offsite is not None:
        remote = offsite_client if offsite_client is not None else make_s3_client(cfg.offsite.s3())
        store = BackupStore(
            remote,
            cfg.offsite.bucket,
            cfg.prefix,
            name=OFFSITE,
            endpoint_url=cfg.offsite.endpoint_url,
        )
        targets.append(Target(store, lock_days=cfg.offsite.lock_days))
    keys = None
    if cfg.encryption_key is not None:
        keys = KeyRing(
            parse_key(cfg.encryption_key.get_secret_value()),
            [parse_key(k.get_secret_value()) for k in cfg.old_encryption_keys],
        )
    return BackupContext(
        cfg=cfg,
        targets=Targets(tuple(targets)),
        models=ModelsBucket(client, settings.s3.models_bucket),
        live=live if live is not None else PgTarget(settings.postgres.url),
        log_bounds=log_bounds if log_bounds is not None else KafkaLogBounds(settings.kafka),
        keys=keys,
    )


def build_service(
    settings: BackupSettings,
    *,
    client: S3Client | None = None,
    live: PgTarget | None = None,
    log_bounds: LogBounds | None = None,
    offsite_client: S3Client | None = None,
) -> BackupService:
    """The service the CLI and the DAG tasks use; the keywords replace the real adapters."""
    return BackupService(
        build_context(
            settings,
            client=client,
            live=live,
            log_bounds=log_bounds,
            offsite_client=offsite_client,
        )
    )

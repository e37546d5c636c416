"""The backup service's composition root hands the S3 client and the live database in; no
servers (a stand-in client is never called)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import pytest

from metalcast_backup import BackupService, RefusedError, build_service
from metalcast_backup.config import BackupSection, BackupSettings
from metalcast_backup.dump import PgTarget
from metalcast_core import PostgresSettings, S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SETTINGS = BackupSettings(
    postgres=PostgresSettings(url="postgresql://u:p@db.example:5432/live"),
    s3=S3Settings(models_bucket="m-bucket", backups_bucket="b-bucket"),
    backup=BackupSection(prefix="nightly", keep=3),
)


def test_the_client_and_the_live_database_are_handed_in() -> None:
    client = cast("S3Client", object())
    service = build_service(SETTINGS, client=client)
    assert isinstance(service, BackupService)
    ctx = service.ctx
    assert ctx.store.client is client
    assert (ctx.store.bucket, ctx.store.prefix) == ("b-bucket", "nightly/")
    assert ctx.live == PgTarget("postgresql://u:p@db.example:5432/live")
    assert ctx.models_bucket == "m-bucket"
    assert ctx.cfg.keep == 3


def test_a_live_target_handed_in_replaces_the_settings_one() -> None:
    other = PgTarget("postgresql://u@elsewhere:5432/copy")
    service = build_service(SETTINGS, client=cast("S3Client", object()), live=other)
    assert service.ctx.live is other
    with pytest.raises(RefusedError, match="live database 'copy'"):
        service._refuse_live("copy")

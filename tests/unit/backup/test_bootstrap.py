"""The backup service's composition root hands the S3 client and the live database in; no
servers (a stand-in client is never called)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import pytest
from pydantic import SecretStr

from metalcast_backup import BackupService, RefusedError, build_service
from metalcast_backup.config import BackupSection, BackupSettings, OffsiteTarget
from metalcast_backup.crypto import key_id, new_key, parse_key
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


def test_without_offsite_there_is_one_target_and_no_encryption() -> None:
    ctx = build_service(SETTINGS, client=cast("S3Client", object())).ctx
    assert ctx.targets.names == ["primary"]
    assert ctx.keys is None


def test_the_offsite_target_gets_its_own_client_bucket_and_lock_days() -> None:
    key = new_key()
    settings = SETTINGS.model_copy(
        update={
            "backup": BackupSection(
                prefix="nightly",
                offsite=OffsiteTarget(
                    endpoint_url="https://s3.elsewhere.example",
                    access_key_id=SecretStr("offsite-id"),
                    secret_access_key=SecretStr("offsite-secret-value"),
                    bucket="far-away",
                    lock_days=30,
                ),
                encryption_key=SecretStr(key),
            )
        }
    )
    primary, remote = cast("S3Client", object()), cast("S3Client", object())
    ctx = build_service(settings, client=primary, offsite_client=remote).ctx
    assert ctx.targets.names == ["primary", "offsite"]
    first, second = ctx.targets.targets
    assert (first.store.client, first.store.bucket, first.lock_days) == (primary, "b-bucket", None)
    assert (second.store.client, second.store.bucket, second.store.prefix) == (
        remote,
        "far-away",
        "nightly/",
    )
    assert (second.store.endpoint_url, second.lock_days) == ("https://s3.elsewhere.example", 30)
    # The models are read from (and restored to) the primary's S3, never the off-box one.
    assert ctx.models.client is primary
    assert ctx.keys is not None
    assert ctx.keys.key_id == key_id(parse_key(key))
    assert ctx.targets.only("offsite").names == ["offsite"]
    with pytest.raises(RefusedError, match="no backup target 'elsewhere'"):
        ctx.targets.only("elsewhere")


# Production settings that pass the placeholder check on their own (a password in the URL,
# the backup's own S3 user).
REAL_PG = PostgresSettings(url="postgresql://metalcast_backup_login:a-real-pw@db:5432/metalcast")
REAL_S3 = S3Settings(
    access_key_id=SecretStr("metalcast-backup"), secret_access_key=SecretStr("x" * 20)
)


def test_the_settings_read_the_offsite_target_and_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = new_key()
    for name, value in {
        "METALCAST_BACKUP__OFFSITE__ENDPOINT_URL": "http://127.0.0.1:29100",
        "METALCAST_BACKUP__OFFSITE__ACCESS_KEY_ID": "metalcast-offsite",
        "METALCAST_BACKUP__OFFSITE__SECRET_ACCESS_KEY": "a-real-secret-here",
        "METALCAST_BACKUP__OFFSITE__BUCKET": "offsite-backups",
        "METALCAST_BACKUP__OFFSITE__LOCK_DAYS": "3",
        "METALCAST_BACKUP__ENCRYPTION_KEY": key,
    }.items():
        monkeypatch.setenv(name, value)
    settings = BackupSettings(environment="production", postgres=REAL_PG, s3=REAL_S3)
    offsite = settings.backup.offsite
    assert offsite is not None
    assert (offsite.endpoint_url, offsite.bucket, offsite.lock_days) == (
        "http://127.0.0.1:29100",
        "offsite-backups",
        3,
    )
    assert settings.backup.encryption_key is not None
    monkeypatch.setenv("METALCAST_BACKUP__OFFSITE__SECRET_ACCESS_KEY", "changethis")
    with pytest.raises(
        ValueError, match="placeholder secrets in production: METALCAST_BACKUP__OFFSITE"
    ):
        BackupSettings(environment="production", postgres=REAL_PG, s3=REAL_S3)
    monkeypatch.setenv("METALCAST_BACKUP__ENCRYPTION_KEY", "c2hvcnQ=")
    with pytest.raises(ValueError, match="AES-256 needs 32") as refused:
        BackupSettings()
    assert "c2hvcnQ=" not in str(refused.value)

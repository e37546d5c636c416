"""Backups off the box, on the real stack's two MinIO servers: every backup on both targets,
the off-box bucket versioned and object-locked, files encrypted with a key from the settings;
the primary's backups bucket lost (or its server unreachable): verify and restore from the
off-box copy bring back every row and every model file."""

from __future__ import annotations

import hashlib
import socket
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError
from pydantic import SecretStr

from metalcast_backup.bootstrap import build_service
from metalcast_backup.config import BackupSettings, OffsiteTarget
from metalcast_backup.crypto import MAGIC, key_id, new_key, parse_key
from metalcast_backup.dump import PgTarget, count_rows_in, drop_database
from metalcast_backup.service import BackupFailed, RefusedError
from metalcast_core import PostgresSettings, S3Settings, make_s3_client
from tests.integration.test_backup import (
    backup_settings,
    empty_bucket,
    model_files,
    seed_ticks,
    seed_training,
)
from tests.support import fetchval

pytestmark = pytest.mark.integration

OPS = {"ops.backups", "ops.backup_verifications"}


def offsite_target(s3: S3Settings, **extra: object) -> OffsiteTarget:
    return OffsiteTarget.model_validate(
        {
            "endpoint_url": s3.endpoint_url,
            "access_key_id": s3.access_key_id,
            "secret_access_key": s3.secret_access_key,
            "region": s3.region,
            "bucket": s3.backups_bucket,
            "lock_days": 1,
            **extra,
        }
    )


def objects(s3: S3Settings, bucket: str) -> dict[str, bytes]:
    return model_files(make_s3_client(s3), bucket)


def delete_bucket(s3: S3Settings, bucket: str) -> None:
    client = make_s3_client(s3)
    empty_bucket(client, bucket)
    client.delete_bucket(Bucket=bucket)


def _dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed once this returns


async def test_a_backup_is_on_both_targets_locked_there_and_encrypted(
    pg_settings: PostgresSettings, s3_settings: S3Settings, offsite_s3: S3Settings
) -> None:
    key = new_key()
    await seed_ticks(pg_settings, 2_000)
    await seed_training(pg_settings, s3_settings, make_s3_client(s3_settings))
    settings = backup_settings(
        pg_settings, s3_settings, offsite=offsite_target(offsite_s3), encryption_key=key
    )
    service = build_service(settings)

    manifest, verification, _ = await service.run_verify_prune()
    backup_id = manifest.backup_id

    assert verification.status == "passed", verification
    assert [t.name for t in manifest.targets] == ["primary", "offsite"]
    offsite = manifest.targets[1]
    assert (offsite.endpoint_url, offsite.bucket) == (
        offsite_s3.endpoint_url,
        offsite_s3.backups_bucket,
    )
    assert (offsite.versioning, offsite.object_lock) == ("enabled", "GOVERNANCE 1 days")
    assert manifest.encryption is not None
    assert manifest.encryption.key_id == key_id(parse_key(key))
    assert key not in manifest.to_json().decode()
    # The same files, byte for byte, on both servers; the data files are ciphertext.
    root = f"backups/{backup_id}/"
    primary = objects(s3_settings, s3_settings.backups_bucket)
    remote = objects(offsite_s3, offsite_s3.backups_bucket)
    names = {f"{root}manifest.json", f"{root}database.dump", f"{root}models.tar"}
    assert set(primary) == set(remote) == names
    for name in ("database.dump", "models.tar"):
        data = remote[f"{root}{name}"]
        assert data == primary[f"{root}{name}"]
        assert data.startswith(MAGIC)
        stored = {f.name: f for f in manifest.stored}[name]
        assert hashlib.sha256(data).hexdigest() == stored.sha256
    assert b"XAUUSD" not in remote[f"{root}models.tar"]  # the model keys are inside the tar
    # The off-box bucket: versioned, locked by default; a locked version cannot be deleted.
    client = make_s3_client(offsite_s3)
    bucket = offsite_s3.backups_bucket
    assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    head = client.head_object(Bucket=bucket, Key=f"{root}database.dump")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC)
    with pytest.raises(ClientError, match="WORM"):
        client.delete_object(Bucket=bucket, Key=f"{root}database.dump", VersionId=head["VersionId"])
    # Another key cannot restore it, and says which key it needs.
    other = build_service(
        backup_settings(
            pg_settings, s3_settings, offsite=offsite_target(offsite_s3), encryption_key=new_key()
        )
    )
    with pytest.raises(RefusedError, match=f"encrypted with key {manifest.encryption.key_id}"):
        await other.restore(backup_id, f"nokey_{backup_id[:8]}")


async def test_losing_the_primary_loses_no_backup(
    pg_settings: PostgresSettings, s3_settings: S3Settings, offsite_s3: S3Settings
) -> None:
    """The drill: back up (encrypted, both targets); lose the primary's backups bucket, the
    database and every model file; verify and restore from the off-box copy alone."""
    client = make_s3_client(s3_settings)
    await seed_ticks(pg_settings, 3_000)
    files = await seed_training(pg_settings, s3_settings, client)
    settings = backup_settings(
        pg_settings, s3_settings, offsite=offsite_target(offsite_s3), encryption_key=new_key()
    )
    service = build_service(settings)
    backup_id = (await service.run_verify_prune())[0].backup_id
    before = await count_rows_in(PgTarget(pg_settings.url))

    delete_bucket(s3_settings, s3_settings.backups_bucket)  # the primary's backups: gone
    try:
        await _restore_and_verify_from_offsite(
            pg_settings, s3_settings, settings, backup_id, before, files
        )
    finally:
        client.create_bucket(Bucket=s3_settings.backups_bucket)  # for the fixture's cleanup


async def _restore_and_verify_from_offsite(
    pg_settings: PostgresSettings,
    s3_settings: S3Settings,
    settings: BackupSettings,
    backup_id: str,
    before: dict[str, int],
    files: dict[str, bytes],
) -> None:
    client = make_s3_client(s3_settings)
    service = build_service(settings)
    live = PgTarget(pg_settings.url)
    await drop_database(live.admin, live.database)
    empty_bucket(client, s3_settings.models_bucket)

    assert [m.backup_id for m in await service.list()] == [backup_id]
    assert await service.holders() == {backup_id: ["offsite"]}

    report = await service.restore(backup_id, live.database, force=True)

    assert report.source == "offsite"
    assert report.problems == []
    after = await count_rows_in(live)
    assert {k: v for k, v in after.items() if k not in OPS} == {
        k: v for k, v in before.items() if k not in OPS
    }
    assert after["prices.ticks"] == 3_000
    assert model_files(client, s3_settings.models_bucket) == files
    listed = await fetchval(pg_settings, f"SELECT status FROM ops.backups WHERE id = '{backup_id}'")
    assert listed == "complete"
    # Verifying every copy names the lost one; verifying the off-box copy passes.
    everywhere = await service.verify(backup_id)
    assert everywhere.status == "failed"
    assert everywhere.problems == [f"target primary: backup {backup_id} is missing"]
    offsite = await service.verify(backup_id, source="offsite")
    assert offsite.status == "passed", offsite

    # The primary's server unreachable altogether: the off-box copy still verifies.
    away = settings.model_copy(
        update={"s3": s3_settings.model_copy(update={"endpoint_url": _dead_endpoint()})}
    )
    cut_off = build_service(away)
    assert [m.backup_id for m in await cut_off.list()] == [backup_id]
    verification = await cut_off.verify(backup_id, source="offsite")
    assert verification.status == "passed", verification


async def test_retention_applies_to_both_targets(
    pg_settings: PostgresSettings, s3_settings: S3Settings, offsite_s3: S3Settings
) -> None:
    await seed_ticks(pg_settings, 100)
    settings = backup_settings(pg_settings, s3_settings, keep=2, offsite=offsite_target(offsite_s3))
    service = build_service(settings)
    made = [(await service.run_verify_prune())[0].backup_id for _ in range(3)]
    offsite = service.ctx.targets.only("offsite").primary
    assert service.store.backup_ids() == made[1:]
    assert offsite.backup_ids() == made[1:]
    # Off the box the deleted backup's versions stay, locked, behind delete markers.
    client = make_s3_client(offsite_s3)
    versions = client.list_object_versions(
        Bucket=offsite_s3.backups_bucket, Prefix=f"backups/{made[0]}/"
    )
    assert len(versions.get("Versions", [])) >= 3
    assert len(versions.get("DeleteMarkers", [])) == 3


async def test_an_existing_bucket_without_object_lock_is_reported_not_fatal(
    pg_settings: PostgresSettings, s3_settings: S3Settings, offsite_s3: S3Settings
) -> None:
    make_s3_client(offsite_s3).create_bucket(Bucket=offsite_s3.backups_bucket)  # no lock
    settings = backup_settings(pg_settings, s3_settings, offsite=offsite_target(offsite_s3))
    manifest = await build_service(settings).run()
    assert manifest.status == "complete"
    offsite = manifest.targets[1]
    assert offsite.versioning == "enabled"
    assert offsite.object_lock is not None
    assert offsite.object_lock.startswith("not enabled on this bucket")


async def test_a_backup_is_not_complete_until_it_is_off_the_box(
    pg_settings: PostgresSettings, s3_settings: S3Settings
) -> None:
    unreachable = OffsiteTarget(
        endpoint_url=_dead_endpoint(),
        access_key_id=SecretStr("nobody"),
        secret_access_key=SecretStr("nobody-secret"),
        bucket="never",
    )
    await seed_ticks(pg_settings, 100)
    service = build_service(backup_settings(pg_settings, s3_settings, offsite=unreachable))
    with pytest.raises(BackupFailed, match="target offsite"):
        await service.run()
    status = await fetchval(pg_settings, "SELECT status FROM ops.backups")
    assert status == "failed"


async def test_backups_made_before_the_offsite_target_still_verify_and_count(
    pg_settings: PostgresSettings, s3_settings: S3Settings, offsite_s3: S3Settings
) -> None:
    """Adding the off-box target later: the older backups (on the primary only) still verify
    and count among the kept ones; the new ones go to both."""
    await seed_ticks(pg_settings, 100)
    before = build_service(backup_settings(pg_settings, s3_settings, keep=2))
    older = (await before.run_verify_prune())[0].backup_id
    after = build_service(
        backup_settings(pg_settings, s3_settings, keep=2, offsite=offsite_target(offsite_s3))
    )
    assert (await after.verify(older)).status == "passed"
    newer, _, plan = await after.run_verify_prune()
    assert plan.keep == (newer.backup_id, older)
    assert await after.holders() == {older: ["primary"], newer.backup_id: ["primary", "offsite"]}

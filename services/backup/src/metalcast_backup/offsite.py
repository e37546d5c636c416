"""The off-box bucket's protection: versioning, and object lock in governance mode.

:func:`protect_bucket` runs before every backup (a few HEAD/GET requests): it creates the
bucket if missing (with object lock enabled, which S3 and MinIO allow only at creation),
turns versioning on, and sets the bucket's default retention to ``lock_days`` days in
governance mode, so every object a backup writes there cannot be deleted or overwritten for
that long: deleting one (retention does) only adds a delete marker, the locked version stays.
A server or bucket that cannot do one of these is reported, never a crash: the backup goes on
and its manifest says what protects the copies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("metalcast.backup")

LOCK_MODE: Literal["GOVERNANCE"] = "GOVERNANCE"
# Answers of a server that lacks the feature (rather than a transient failure).
_UNSUPPORTED = {
    "NotImplemented",
    "InvalidRequest",
    "InvalidBucketState",
    "MethodNotAllowed",
    "AccessDenied",
    "XNotImplemented",
    "UnsupportedOperation",
}


@dataclass(frozen=True)
class Protection:
    versioning: str  # "enabled", or why not
    object_lock: str  # "GOVERNANCE 7 days", "off", or why not
    created: bool = False

    @property
    def locked(self) -> bool:
        return self.object_lock.startswith(LOCK_MODE)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _why(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"unavailable ({error.get('Code', '?')}: {error.get('Message', '')})"


def _exists(client: S3Client, bucket: str) -> bool:
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if _code(exc) in {"404", "NoSuchBucket"}:
            return False
        raise
    return True


def _create(client: S3Client, bucket: str, *, lock: bool) -> None:
    if lock:
        try:
            client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
            return
        except ClientError as exc:
            if _code(exc) not in _UNSUPPORTED:
                raise
            log.warning("%s: cannot create with object lock (%s); creating without", bucket, exc)
    client.create_bucket(Bucket=bucket)


def _versioning(client: S3Client, bucket: str) -> str:
    try:
        if client.get_bucket_versioning(Bucket=bucket).get("Status") != "Enabled":
            client.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
            )
        if client.get_bucket_versioning(Bucket=bucket).get("Status") != "Enabled":
            return "unavailable (the server does not keep it enabled)"
    except ClientError as exc:
        if _code(exc) not in _UNSUPPORTED:
            raise
        return _why(exc)
    return "enabled"


def _object_lock(client: S3Client, bucket: str, days: int) -> str:
    if days == 0:
        return "off (lock_days is 0)"
    try:
        config = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    except ClientError as exc:
        if _code(exc) == "ObjectLockConfigurationNotFoundError":
            return (
                "not enabled on this bucket (object lock can only be turned on when a bucket "
                "is created: create it with object lock, or let the backup create it)"
            )
        if _code(exc) not in _UNSUPPORTED:
            raise
        return _why(exc)
    if config.get("ObjectLockEnabled") != "Enabled":
        return "not enabled on this bucket"
    retention = config.get("Rule", {}).get("DefaultRetention", {})
    if retention.get("Mode") != LOCK_MODE or retention.get("Days") != days:
        try:
            client.put_object_lock_configuration(
                Bucket=bucket,
                ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": LOCK_MODE, "Days": days}},
                },
            )
        except ClientError as exc:
            if _code(exc) not in _UNSUPPORTED:
                raise
            return _why(exc)
    return f"{LOCK_MODE} {days} days"


def protect_bucket(client: S3Client, bucket: str, *, lock_days: int) -> Protection:
    """Create ``bucket`` if missing (with object lock), enable versioning, set the default
    retention; what holds, or why not. Raises only when the server cannot be reached."""
    created = not _exists(client, bucket)
    if created:
        _create(client, bucket, lock=lock_days > 0)
    protection = Protection(
        versioning=_versioning(client, bucket),
        object_lock=_object_lock(client, bucket, lock_days),
        created=created,
    )
    if protection.versioning != "enabled":
        log.warning("off-box bucket %s: versioning %s", bucket, protection.versioning)
    if lock_days and not protection.locked:
        log.warning("off-box bucket %s: object lock %s", bucket, protection.object_lock)
    return protection

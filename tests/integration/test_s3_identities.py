"""Least privilege in S3: each service's MinIO identity (metalcast.stack.s3_identities) does
exactly its job and is refused the rest; nothing runs with the root key but the set-up."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError

from metalcast_core import S3Settings, make_s3_client
from tests.support import s3_identities

pytestmark = pytest.mark.integration

OPERATIONS = ("list", "get", "put", "delete")


def allowed(settings: S3Settings, bucket: str) -> set[str]:
    """Which of list/get/put/delete ``settings``' key may do in ``bucket`` (tried for real)."""
    client = make_s3_client(settings)
    attempts: dict[str, Callable[[], object]] = {
        "list": lambda: client.list_objects_v2(Bucket=bucket),
        "get": lambda: client.get_object(Bucket=bucket, Key="seed"),
        "put": lambda: client.put_object(Bucket=bucket, Key="probe", Body=b"x"),
        "delete": lambda: client.delete_object(Bucket=bucket, Key="probe"),
    }
    done = set()
    for name in OPERATIONS:
        try:
            attempts[name]()
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "AccessDenied":
                raise
            continue
        done.add(name)
    return done


async def test_each_identity_does_exactly_its_job(s3_settings: S3Settings) -> None:
    root = make_s3_client(s3_settings)
    for bucket in (s3_settings.models_bucket, s3_settings.backups_bucket):
        root.put_object(Bucket=bucket, Key="seed", Body=b"seed")
    everything = set(OPERATIONS)
    expected = {
        "trainer": {"models": everything, "backups": set()},
        "api": {"models": {"list", "get"}, "backups": set()},
        "backup": {"models": {"list", "get"}, "backups": everything},
    }
    async with s3_identities(s3_settings) as identities:
        assert set(identities) == set(expected)
        for service, settings in identities.items():
            assert settings.access_key_id != s3_settings.access_key_id
            got = {
                "models": allowed(settings, s3_settings.models_bucket),
                "backups": allowed(settings, s3_settings.backups_bucket),
            }
            assert got == expected[service], service
            # No identity may create buckets or see others' (the root key's job).
            client = make_s3_client(settings)
            with pytest.raises(ClientError, match="AccessDenied"):
                client.create_bucket(Bucket=f"{s3_settings.models_bucket}-x")
    # Removed afterwards: the keys no longer work.
    with pytest.raises(ClientError):
        make_s3_client(identities["api"]).list_objects_v2(Bucket=s3_settings.models_bucket)

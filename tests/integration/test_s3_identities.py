"""Least privilege in S3: each service's MinIO identity (metalcast.stack.s3_identities) does
exactly its job and is refused the rest; nothing runs with the root key but the set-up."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from botocore.exceptions import ClientError

from metalcast_core import S3Settings, make_s3_client
from tests.support import s3_identities

pytestmark = pytest.mark.integration

OPERATIONS = ("list", "get", "put", "delete")


def _bulk_bucket(s3: S3Settings) -> str:
    """A bulk bucket of the test's own (``<models bucket>-bulk``), made with the root key."""
    name = f"{s3.models_bucket}-bulk"
    make_s3_client(s3).create_bucket(Bucket=name)
    return name


@pytest.fixture(autouse=True)
def _drop_bulk_bucket(s3_settings: S3Settings) -> Iterator[None]:
    yield
    root = make_s3_client(s3_settings)
    name = f"{s3_settings.models_bucket}-bulk"
    try:
        for item in root.list_objects_v2(Bucket=name).get("Contents", []):
            root.delete_object(Bucket=name, Key=item["Key"])
        root.delete_bucket(Bucket=name)
    except ClientError:
        pass  # the test made none


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
    bulk = _bulk_bucket(s3_settings)
    for bucket in (s3_settings.models_bucket, s3_settings.backups_bucket, bulk):
        root.put_object(Bucket=bucket, Key="seed", Body=b"seed")
    everything = set(OPERATIONS)
    expected = {
        "trainer": {"models": everything, "backups": set(), "bulk": set()},
        "api": {"models": {"list", "get"}, "backups": set(), "bulk": set()},
        "backup": {"models": {"list", "get"}, "backups": everything, "bulk": set()},
        # The market_data_bulk DAG: its bucket, and adding the volume model's file (no
        # reading, listing or deleting of the models bucket).
        "bulk": {"models": {"put"}, "backups": set(), "bulk": everything},
    }
    async with s3_identities(s3_settings, bulk) as identities:
        assert set(identities) == set(expected)
        for service, settings in identities.items():
            assert settings.access_key_id != s3_settings.access_key_id
            got = {
                "models": allowed(settings, s3_settings.models_bucket),
                "backups": allowed(settings, s3_settings.backups_bucket),
                "bulk": allowed(settings, bulk),
            }
            assert got == expected[service], service
            # No identity may create buckets or see others' (the root key's job).
            client = make_s3_client(settings)
            with pytest.raises(ClientError, match="AccessDenied"):
                client.create_bucket(Bucket=f"{s3_settings.models_bucket}-x")
    # Removed afterwards: the keys no longer work.
    with pytest.raises(ClientError):
        make_s3_client(identities["api"]).list_objects_v2(Bucket=s3_settings.models_bucket)


async def test_the_bulk_dag_s_settings_write_the_bulk_bucket_with_the_bulk_identity(
    s3_settings: S3Settings,
) -> None:
    """As compose gives Airflow's workers: the backup's key in METALCAST_S3__*, the bulk's in
    METALCAST_BULK__S3_*. The bulk settings write, publish and prune in the bulk bucket and add
    a model file; the backup's key alone is refused there."""
    from metalcast_bulk.config import BulkSettings
    from metalcast_bulk.storage import Store

    bulk = _bulk_bucket(s3_settings)
    async with s3_identities(s3_settings, bulk) as identities:
        backup, own = identities["backup"], identities["bulk"]
        settings = BulkSettings.model_validate(
            {
                "environment": "test",
                "s3": backup.model_dump(),
                "bulk": {
                    "data_url": f"s3://{bulk}/datasets",
                    "s3_access_key_id": own.access_key_id,
                    "s3_secret_access_key": own.secret_access_key,
                },
            }
        )
        assert settings.s3.access_key_id == own.access_key_id
        store = Store.open(settings.bulk.data_url, settings.s3)
        store.write_json("prices/runs/r1/report.json", {"rows": 1})
        assert store.read_json("prices/runs/r1/report.json") == {"rows": 1}
        store.delete_dir("prices/runs/r1")
        assert not store.exists("prices/runs/r1/report.json")
        make_s3_client(settings.s3).put_object(
            Bucket=s3_settings.models_bucket, Key="models/VOLUME/1/model.txt", Body=b"m"
        )
        refused = Store.open(settings.bulk.data_url, backup)
        with pytest.raises(OSError, match="ACCESS_DENIED"):
            refused.write_json("prices/runs/r2/report.json", {"rows": 1})

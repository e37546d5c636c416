"""One S3 identity per service in MinIO, each holding one policy: only its buckets, only what
it does there. The local stack makes them after MinIO is ready; compose's ``minio-init`` job
makes the same with ``mc`` (docs/operations.md, "Roles and identities").

| service | models bucket | backups bucket |
|---|---|---|
| trainer | read, write, delete (retention) | none |
| api | read (model files, presigned URLs) | none |
| backup (Airflow's tasks) | read | read, write, delete (pruning) |
| bulk (the ``market_data_bulk`` DAG's tasks) | put only (the volume model's file) | none |

and the bulk bucket (``metalcast-bulk``: the bulk input and its datasets): the bulk identity
reads, writes and deletes there (pruning old runs); no other identity may touch it.

The ingestor, the sink and the watch have no S3 identity: they never open S3.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from minio.credentials.providers import StaticProvider
from minio.error import MinioAdminException
from minio.minioadmin import MinioAdmin
from pydantic import SecretStr

from metalcast_core import S3Settings

READ_BUCKET = ("s3:ListBucket", "s3:GetBucketLocation")
READ_OBJECTS = ("s3:GetObject",)
WRITE_BUCKET = ("s3:ListBucketMultipartUploads",)
WRITE_OBJECTS = (
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
# Adding objects only (no delete, no read): the bulk pipeline's model files.
PUT_OBJECTS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")


# The bulk pipeline's bucket (compose's METALCAST_BULK__INPUT_URL and DATA_URL point into it).
BULK_BUCKET = "metalcast-bulk"


@dataclass(frozen=True)
class Identity:
    """A service's S3 user: its key pair in the local stack, what it may do in which bucket
    (``"models"``/``"backups"``: the S3 settings' ``models_bucket``/``backups_bucket``;
    ``"bulk"``: the bulk pipeline's bucket)."""

    service: str
    access_key: str
    secret_key: str
    reads: tuple[str, ...]
    writes: tuple[str, ...] = ()  # put and delete
    puts: tuple[str, ...] = ()  # put only

    def policy(self, s3: S3Settings, bulk_bucket: str = BULK_BUCKET) -> dict[str, Any]:
        """The IAM policy of this identity for the buckets ``s3`` names (and ``bulk_bucket``)."""
        buckets = {"models": s3.models_bucket, "backups": s3.backups_bucket, "bulk": bulk_bucket}
        statements: list[dict[str, Any]] = []
        for kind, bucket_actions, object_actions in (
            ("reads", READ_BUCKET, READ_OBJECTS),
            ("writes", WRITE_BUCKET, WRITE_OBJECTS),
            ("puts", WRITE_BUCKET, PUT_OBJECTS),
        ):
            names = [buckets[b] for b in getattr(self, kind)]
            if not names:
                continue
            statements.append(
                {
                    "Effect": "Allow",
                    "Action": list(bucket_actions),
                    "Resource": [f"arn:aws:s3:::{n}" for n in names],
                }
            )
            statements.append(
                {
                    "Effect": "Allow",
                    "Action": list(object_actions),
                    "Resource": [f"arn:aws:s3:::{n}/*" for n in names],
                }
            )
        return {"Version": "2012-10-17", "Statement": statements}

    def settings(self, s3: S3Settings) -> S3Settings:
        """``s3`` with this identity's key pair instead of the one given."""
        return s3.model_copy(
            update={
                "access_key_id": SecretStr(self.access_key),
                "secret_access_key": SecretStr(self.secret_key),
            }
        )


# The local stack's identities. Their secrets are local-only: production's come from .env
# (compose's minio-init), and ServiceSettings refuses these in production.
IDENTITIES: tuple[Identity, ...] = (
    Identity(
        "trainer", "metalcast-trainer", "metalcast-local-trainer-secret", ("models",), ("models",)
    ),
    Identity("api", "metalcast-api", "metalcast-local-api-secret", ("models",)),
    Identity(
        "backup",
        "metalcast-backup",
        "metalcast-local-backup-secret",
        ("models", "backups"),
        ("backups",),
    ),
    Identity(
        "bulk",
        "metalcast-bulk",
        "metalcast-local-bulk-secret",
        ("bulk",),
        ("bulk",),
        puts=("models",),
    ),
)


def identity(service: str) -> Identity:
    """``service``'s identity; ValueError for a service without one."""
    for ident in IDENTITIES:
        if ident.service == service:
            return ident
    known = ", ".join(i.service for i in IDENTITIES)
    raise ValueError(f"{service!r} has no S3 identity (known: {known})")


def admin_client(root: S3Settings) -> MinioAdmin:
    """MinIO's admin API with the root key ``root`` holds."""
    assert root.endpoint_url is not None
    url = urlsplit(root.endpoint_url)
    return MinioAdmin(
        endpoint=url.netloc,
        credentials=StaticProvider(
            root.access_key_id.get_secret_value(), root.secret_access_key.get_secret_value()
        ),
        region=root.region,
        secure=url.scheme == "https",
    )


def ensure_identities(
    root: S3Settings,
    identities: Iterable[Identity] = IDENTITIES,
    *,
    policy_prefix: str = "",
    bulk_bucket: str = BULK_BUCKET,
) -> list[str]:
    """Create (or update) each identity's user and its policy ``<prefix>metalcast-<service>``
    for the buckets ``root`` names (and ``bulk_bucket``), and attach it. Idempotent. Returns
    the access keys."""
    admin = admin_client(root)
    done = []
    for ident in identities:
        name = f"{policy_prefix}metalcast-{ident.service}"
        admin.policy_add(name, policy=ident.policy(root, bulk_bucket))
        admin.user_add(ident.access_key, ident.secret_key)
        try:
            admin.attach_policy([name], user=ident.access_key)
        except MinioAdminException as exc:  # attached already: nothing to change
            if "already" not in str(exc).lower():
                raise
        done.append(ident.access_key)
    return done


def remove_identities(
    root: S3Settings, identities: Iterable[Identity], *, policy_prefix: str = ""
) -> None:
    """Delete the users and their policies (tests make their own and remove them)."""
    admin = admin_client(root)
    for ident in identities:
        admin.user_remove(ident.access_key)
        admin.policy_remove(f"{policy_prefix}metalcast-{ident.service}")


def policy_json(ident: Identity, s3: S3Settings) -> str:
    """The policy as ``mc admin policy create`` reads it from a file."""
    return json.dumps(ident.policy(s3), indent=2)


def identity_env(service: str) -> dict[str, str]:
    """The S3 key variables of ``service``'s identity (``metalcast stack env --service``)."""
    ident = identity(service)
    return {
        "METALCAST_S3__ACCESS_KEY_ID": ident.access_key,
        "METALCAST_S3__SECRET_ACCESS_KEY": ident.secret_key,
        "AWS_ACCESS_KEY_ID": ident.access_key,
        "AWS_SECRET_ACCESS_KEY": ident.secret_key,
    }

"""S3 access (boto3, SigV4). boto3 is synchronous: async callers use ``asyncio.to_thread``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from metalcast_core._settings import S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def make_s3_client(settings: S3Settings) -> S3Client:
    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key_id.get_secret_value(),
        aws_secret_access_key=settings.secret_access_key.get_secret_value(),
        region_name=settings.region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


def ensure_buckets(
    client: S3Client, settings: S3Settings, buckets: tuple[str, ...] | None = None
) -> list[str]:
    """Create the models and backups buckets (or only ``buckets``) if missing. Returns the
    names created. A service's own S3 identity may see only its buckets: name those."""
    created = []
    for bucket in buckets or (settings.models_bucket, settings.backups_bucket):
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket"}:
                raise
            client.create_bucket(Bucket=bucket)
            created.append(bucket)
    return created

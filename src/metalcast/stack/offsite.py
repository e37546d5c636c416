"""The off-box backup target of the local stack: a second MinIO server (the same cached
binary as the first), with its own data folder (``.stack/minio-offsite``), its own ports
(``METALCAST_STACK_S3_OFFSITE_PORT``, ``..._S3_OFFSITE_CONSOLE_PORT``) and its own root
credentials, so losing the first MinIO (its process, its folder, its keys) loses no backup.

Its bucket is created with object lock enabled (MinIO allows it only at creation); the backup
service turns versioning on and sets the default governance retention itself."""

from __future__ import annotations

import shutil

from botocore.exceptions import ClientError
from pydantic import SecretStr

from metalcast.stack._paths import StackConfig
from metalcast.stack.minio import REGION, MinIO
from metalcast_core import S3Settings, make_s3_client

ACCESS_KEY = "metalcast-offsite"
SECRET_KEY = "metalcast-offsite-local-secret"
BUCKET = "metalcast-backups-offsite"


def enabled(config: StackConfig) -> bool:
    """Whether this stack runs the off-box MinIO: not with ``METALCAST_STACK_S3=seaweedfs``,
    and only where MinIO is built or can be (Go on PATH)."""
    if config.s3_implementation == "seaweedfs":
        return False
    return MinIO(config).binary.is_file() or shutil.which("go") is not None


def offsite_settings(config: StackConfig) -> S3Settings:
    """The connection to the off-box MinIO (``backups_bucket``: its backups bucket)."""
    return S3Settings(
        endpoint_url=f"http://{config.host}:{config.s3_offsite_port}",
        access_key_id=SecretStr(ACCESS_KEY),
        secret_access_key=SecretStr(SECRET_KEY),
        region=REGION,
        backups_bucket=BUCKET,
    )


def create_locked_bucket(settings: S3Settings, bucket: str) -> bool:
    """Create ``bucket`` with object lock enabled unless it exists; whether it was created."""
    client = make_s3_client(settings)
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket"}:
            raise
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return True


class OffsiteMinIO(MinIO):
    """A second MinIO instance: the same binary, another folder, other ports and keys."""

    name = "s3-offsite"

    @property
    def state_name(self) -> str:
        return "minio-offsite"

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.config.s3_offsite_port}"

    @property
    def console_port(self) -> int:
        return self.config.s3_offsite_console_port

    def ports(self) -> list[int]:
        return [self.config.s3_offsite_port, self.config.s3_offsite_console_port]

    def root_credentials(self) -> tuple[str, str]:
        return ACCESS_KEY, SECRET_KEY

    def setup(self) -> None:
        create_locked_bucket(offsite_settings(self.config), BUCKET)

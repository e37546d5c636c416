"""The manifest: what a backup holds, written last as ``<prefix><id>/manifest.json``.

A backup is complete when its manifest says ``complete``; the dump and the model copies
were all written before that. The verification, once done, is added to the same manifest.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
TOOL_NAME = "metalcast-backup"

BackupStatus = Literal["running", "complete", "failed", "deleted"]
VerifyStatus = Literal["passed", "failed"]

_ID = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")
_ID_FORMAT = "%Y%m%dT%H%M%S.%fZ"


def new_backup_id(now: datetime | None = None) -> str:
    """``20260115T060000.123456Z``: UTC, sorts as it happened, unique to the microsecond."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime(_ID_FORMAT)


def is_backup_id(value: str) -> bool:
    return bool(_ID.match(value))


def backup_time(backup_id: str) -> datetime:
    return datetime.strptime(backup_id, _ID_FORMAT).replace(tzinfo=UTC)


class _Model(BaseModel):
    # Tolerant when reading: a newer writer may add fields.
    model_config = ConfigDict(extra="ignore")


class ModelFile(_Model):
    key: str  # in the models bucket, e.g. models/XAU/3/XAUUSD.zip
    sha256: str
    size_bytes: int = Field(ge=0)
    # sha256 the trainer recorded in the object's metadata, when it did.
    recorded_sha256: str | None = None


class DumpInfo(_Model):
    key: str
    format: Literal["custom"] = "custom"
    compression: str
    size_bytes: int = Field(ge=0)
    sha256: str


class DatabaseInfo(_Model):
    name: str
    server_version: str
    server_version_num: int
    pg_dump_version: str


class Position(_Model):
    """Where a consumer had read a partition up to, in the backup's snapshot."""

    consumer: str
    topic: str
    partition: int = Field(ge=0)
    next_offset: int = Field(ge=0)


class Verification(_Model):
    status: VerifyStatus
    started_at: datetime
    finished_at: datetime
    scratch_database: str
    duration_s: float
    tables_checked: int = 0
    models_checked: int = 0
    problems: list[str] = Field(default_factory=list)
    error: str | None = None


class TargetInfo(_Model):
    """One place the backup is written to (every one, for a complete backup)."""

    name: str  # primary | offsite
    endpoint_url: str | None = None
    bucket: str
    prefix: str
    # What protects the copies there, as found when the backup ran: "enabled", or why not.
    versioning: str | None = None
    # e.g. "GOVERNANCE 7 days", "off", or why it is unavailable.
    object_lock: str | None = None


class EncryptionInfo(_Model):
    """How the stored files are encrypted (:mod:`metalcast_backup.crypto`); never the key."""

    algorithm: str
    key_id: str
    chunk_bytes: int


class StoredFile(_Model):
    """A file as it is stored on every target (encrypted, when the backup is)."""

    name: str  # database.dump | models.tar
    size_bytes: int = Field(ge=0)
    sha256: str


class Manifest(_Model):
    schema_version: int = SCHEMA_VERSION
    backup_id: str
    status: BackupStatus
    started_at: datetime
    finished_at: datetime | None = None
    tool: str = TOOL_NAME
    tool_version: str
    database: DatabaseInfo | None = None
    dump: DumpInfo | None = None
    # "schema.table" -> rows, counted in the very snapshot pg_dump dumped.
    tables: dict[str, int] = Field(default_factory=dict)
    # The consumers' positions stored with the rows (pipeline.consumer_positions), same snapshot.
    positions: list[Position] = Field(default_factory=list)
    models_bucket: str
    models: list[ModelFile] = Field(default_factory=list)
    # Where the copies are: one tar in the backups bucket, members named by their key.
    models_archive: str = ""
    durations_s: dict[str, float] = Field(default_factory=dict)
    error: str | None = None
    verification: Verification | None = None
    # Where the backup is: complete only once it is on every one of them.
    targets: list[TargetInfo] = Field(default_factory=list)
    encryption: EncryptionInfo | None = None
    # The dump and the models archive as stored (after encryption): every copy must match.
    stored: list[StoredFile] = Field(default_factory=list)

    @property
    def dump_bytes(self) -> int:
        return self.dump.size_bytes if self.dump else 0

    @property
    def models_bytes(self) -> int:
        return sum(m.size_bytes for m in self.models)

    @property
    def total_bytes(self) -> int:
        return self.dump_bytes + self.models_bytes

    @property
    def total_rows(self) -> int:
        return sum(self.tables.values())

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Manifest:
        return cls.model_validate_json(data)


def compare_counts(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    """Every difference between two ``table -> rows`` maps, as sentences; empty if equal."""
    problems = []
    for table in sorted(expected.keys() | actual.keys()):
        if table not in actual:
            problems.append(f"{table}: missing after restore (expected {expected[table]} rows)")
        elif table not in expected:
            problems.append(f"{table}: not in the manifest ({actual[table]} rows after restore)")
        elif expected[table] != actual[table]:
            problems.append(
                f"{table}: {actual[table]} rows after restore, manifest says {expected[table]}"
            )
    return problems

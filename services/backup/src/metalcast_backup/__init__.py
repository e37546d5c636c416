"""metalcast-backup: verified backups of PostgreSQL and the model files, and the pipeline watch."""

from metalcast_backup.config import BackupSection, BackupSettings, WatchSection
from metalcast_backup.manifest import Manifest, ModelFile, Verification
from metalcast_backup.retention import BackupState, RetentionPlan, plan_retention
from metalcast_backup.service import (
    BackupError,
    BackupFailed,
    BackupService,
    RefusedError,
    RestoreReport,
    VerifyFailed,
)
from metalcast_backup.watch import WatchFailed, watch

__all__ = [
    "BackupError",
    "BackupFailed",
    "BackupSection",
    "BackupService",
    "BackupSettings",
    "BackupState",
    "Manifest",
    "ModelFile",
    "RefusedError",
    "RestoreReport",
    "RetentionPlan",
    "Verification",
    "VerifyFailed",
    "WatchFailed",
    "WatchSection",
    "plan_retention",
    "watch",
]

"""metalcast-backup: verified backups of PostgreSQL and the model files."""

from metalcast_backup.bootstrap import build_service
from metalcast_backup.config import BackupSection, BackupSettings
from metalcast_backup.errors import BackupError, BackupFailed, RefusedError, VerifyFailed
from metalcast_backup.manifest import Manifest, ModelFile, Verification
from metalcast_backup.restore import RestoreReport
from metalcast_backup.retention import BackupState, RetentionPlan, plan_retention
from metalcast_backup.service import BackupService

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
    "build_service",
    "plan_retention",
]

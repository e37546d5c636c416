"""What Airflow's tasks call: synchronous, settings from the environment, JSON-able results.

The DAG files import this module inside their task functions, never at parse time.
Each function raises with a message that says what failed (Airflow shows it in the task log).
"""

from __future__ import annotations

import asyncio
from typing import Any

from metalcast_backup.bootstrap import build_service
from metalcast_backup.config import BackupSettings
from metalcast_backup.errors import VerifyFailed
from metalcast_backup.verify import verification_message


def backup(settings: BackupSettings | None = None) -> str:
    """Make a backup; its id (for the verify task)."""
    service = build_service(settings or BackupSettings())
    manifest = asyncio.run(service.run())
    print(
        f"backup {manifest.backup_id} complete: {len(manifest.tables)} tables, "
        f"{manifest.total_rows} rows, {len(manifest.models)} model files, "
        f"{manifest.total_bytes} bytes, {manifest.durations_s.get('total', 0):.1f} s"
    )
    return manifest.backup_id


def verify(backup_id: str, settings: BackupSettings | None = None) -> dict[str, Any]:
    """Verify the backup; raises :class:`VerifyFailed` if it does not restore exactly."""
    service = build_service(settings or BackupSettings())
    verification = asyncio.run(service.verify(backup_id))
    if verification.status != "passed":
        raise VerifyFailed(verification_message(backup_id, verification))
    print(
        f"backup {backup_id} verified in {verification.duration_s:.1f} s: "
        f"{verification.tables_checked} tables, {verification.models_checked} model files"
    )
    return verification.model_dump(mode="json")


def prune(backup_id: str, settings: BackupSettings | None = None) -> dict[str, Any]:
    """Apply retention now that ``backup_id`` is complete and verified."""
    service = build_service(settings or BackupSettings())
    plan = asyncio.run(service.prune(backup_id))
    print(f"retention: {plan.reason}; deleted {list(plan.delete) or 'nothing'}")
    return {"kept": list(plan.keep), "deleted": list(plan.delete), "reason": plan.reason}

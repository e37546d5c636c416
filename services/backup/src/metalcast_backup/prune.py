"""Applying retention: the rule is :func:`metalcast_backup.retention.plan_retention` (pure);
this module gathers every backup's state from the manifests on every target (merged by
:func:`~metalcast_backup.retention.merge_copies`: a backup is as good as its weakest copy)
and deletes what the plan says from every target, only after the newest backup is complete
*and* verified everywhere. (On an object-locked off-box bucket a deletion leaves a delete
marker; the locked versions stay until their retention ends.)"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg

from metalcast_backup import records
from metalcast_backup.context import BackupContext
from metalcast_backup.manifest import Manifest, backup_time
from metalcast_backup.retention import BackupState, RetentionPlan, merge_copies, plan_retention

log = logging.getLogger("metalcast.backup")

# A backup still "running" after this long was killed mid-way: treated as failed.
STALE_RUNNING = timedelta(hours=12)


async def backup_states(ctx: BackupContext) -> list[BackupState]:
    """One state per backup, merged over its copies on every target (each must be readable:
    retention deletes nothing it cannot see whole)."""
    catalogue = await asyncio.to_thread(ctx.targets.catalogue, strict=True)
    configured = set(ctx.targets.names)
    expected: dict[str, set[str]] = {}
    for name, listed in catalogue.items():
        for backup_id, manifest in listed:
            wanted = _written_to(manifest) & configured or {name}
            expected.setdefault(backup_id, set()).update(wanted)
    return merge_copies({name: _states(listed) for name, listed in catalogue.items()}, expected)


def _written_to(manifest: Manifest | None) -> set[str]:
    return {t.name for t in manifest.targets} if manifest is not None else set()


def _states(listed: list[tuple[str, Manifest | None]]) -> list[BackupState]:
    now = datetime.now(UTC)
    out = []
    for backup_id, manifest in listed:
        if manifest is None:
            # No manifest at all: a run that died at once. Old enough, it is a failure.
            when = backup_time(backup_id)
            status = "failed" if now - when > STALE_RUNNING else "running"
            out.append(BackupState(backup_id, status, when))
            continue
        status = manifest.status
        if status == "running" and now - manifest.started_at > STALE_RUNNING:
            status = "failed"
        verified = (
            None if manifest.verification is None else (manifest.verification.status == "passed")
        )
        out.append(BackupState(backup_id, status, manifest.started_at, verified))
    return out


async def prune_backups(ctx: BackupContext, newest: str) -> RetentionPlan:
    """Apply the retention rule after ``newest``; deletes only if it is proven."""
    plan = plan_retention(await backup_states(ctx), keep=ctx.cfg.keep, newest=newest)
    if plan.delete:
        conn = await asyncpg.connect(ctx.live.url)
        try:
            for backup_id in plan.delete:
                await asyncio.to_thread(ctx.targets.delete_backup, backup_id)
                await records.mark_deleted(conn, backup_id, datetime.now(UTC))
                log.info("deleted backup %s (retention)", backup_id)
        finally:
            await conn.close()
    log.info("retention: %s; deleted %d", plan.reason, len(plan.delete))
    return plan

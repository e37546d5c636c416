"""Applying retention: the rule is :func:`metalcast_backup.retention.plan_retention` (pure);
this module gathers every backup's state from the manifests in S3 and deletes what the plan
says, only after the newest backup is complete *and* verified."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg

from metalcast_backup import records
from metalcast_backup.context import BackupContext
from metalcast_backup.manifest import backup_time
from metalcast_backup.retention import BackupState, RetentionPlan, plan_retention

log = logging.getLogger("metalcast.backup")

# A backup still "running" after this long was killed mid-way: treated as failed.
STALE_RUNNING = timedelta(hours=12)


async def backup_states(ctx: BackupContext) -> list[BackupState]:
    now = datetime.now(UTC)
    out = []
    for backup_id, manifest in await asyncio.to_thread(ctx.store.manifests):
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
                await asyncio.to_thread(ctx.store.delete_backup, backup_id)
                await records.mark_deleted(conn, backup_id, datetime.now(UTC))
                log.info("deleted backup %s (retention)", backup_id)
        finally:
            await conn.close()
    log.info("retention: %s; deleted %d", plan.reason, len(plan.delete))
    return plan

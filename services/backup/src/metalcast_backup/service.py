"""The backup operations behind one object, for the CLI and the DAG tasks (built by
:func:`metalcast_backup.bootstrap.build_service`, which hands in the S3 client and the live
database). Each method is one operation's module:

run      :mod:`~metalcast_backup.run`: pg_dump (one snapshot, row counts from the same
         snapshot) + a copy of every model file; the manifest is written last
verify   :mod:`~metalcast_backup.verify`: restore into a scratch database, compare row
         counts and model sha256s, drop it; recorded in the manifest
prune    :mod:`~metalcast_backup.prune`: the retention rule, only after the newest backup is
         complete *and* verified
restore  :mod:`~metalcast_backup.restore`: into a named database (the live one only with
         ``force``) + the model files back
"""

from __future__ import annotations

import asyncio
import builtins

from metalcast_backup.context import BackupContext
from metalcast_backup.errors import BackupError, BackupFailed, RefusedError, VerifyFailed
from metalcast_backup.manifest import Manifest, Verification
from metalcast_backup.prune import backup_states, prune_backups
from metalcast_backup.restore import RestoreReport, restore_backup
from metalcast_backup.retention import BackupState, RetentionPlan
from metalcast_backup.run import make_backup, reconcile
from metalcast_backup.store import BackupStore
from metalcast_backup.verify import refuse_live, verification_message, verify_backup

__all__ = [
    "BackupError",
    "BackupFailed",
    "BackupService",
    "RefusedError",
    "RestoreReport",
    "VerifyFailed",
    "verification_message",
]


class BackupService:
    def __init__(self, ctx: BackupContext) -> None:
        self.ctx = ctx

    @property
    def store(self) -> BackupStore:
        return self.ctx.store

    async def run(self) -> Manifest:
        """Make one backup; :class:`BackupFailed` (after marking it failed) on error."""
        return await make_backup(self.ctx)

    async def reconcile(self) -> list[str]:
        """Rewrite as failed the manifests a failed backup left ``running``; their ids."""
        return await reconcile(self.ctx)

    async def verify(self, backup_id: str, source: str | None = None) -> Verification:
        return await verify_backup(self.ctx, backup_id, source)

    def _refuse_live(self, database: str) -> None:
        refuse_live(self.ctx, database)

    async def states(self) -> list[BackupState]:
        return await backup_states(self.ctx)

    async def prune(self, newest: str) -> RetentionPlan:
        return await prune_backups(self.ctx, newest)

    async def list(self) -> list[Manifest]:
        return await self.ctx.manifests()

    async def holders(self) -> dict[str, builtins.list[str]]:
        """Backup id -> the targets that hold it."""
        return await asyncio.to_thread(self.ctx.targets.holders)

    async def restore(
        self,
        backup_id: str,
        into: str,
        *,
        force: bool = False,
        models: bool | None = None,
        accept_loss: bool = False,
        source: str | None = None,
    ) -> RestoreReport:
        return await restore_backup(
            self.ctx,
            backup_id,
            into,
            force=force,
            models=models,
            accept_loss=accept_loss,
            source=source,
        )

    async def run_verify_prune(self) -> tuple[Manifest, Verification, RetentionPlan]:
        """What ``metalcast-backup run`` does: back up, verify, then apply retention."""
        manifest = await self.run()
        verification = await self.verify(manifest.backup_id)
        if verification.status != "passed":
            raise VerifyFailed(verification_message(manifest.backup_id, verification))
        return manifest, verification, await self.prune(manifest.backup_id)

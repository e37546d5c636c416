"""Backups: run, verify, prune, list, restore. One :class:`BackupService` per settings object.

run      pg_dump (one snapshot, row counts from the same snapshot) + a copy of every model
         file, under ``<prefix><id>/`` in the backups bucket; the manifest is written last
verify   restore into a scratch database with a random name, compare row counts, recompute
         every model file's sha256, drop the scratch database; recorded in the manifest
prune    the retention rule (:mod:`metalcast_backup.retention`), only after the newest
         backup is complete *and* verified
restore  into a named database (the live one only with ``force``) + the model files back
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import asyncpg

from metalcast_backup import records
from metalcast_backup.config import BackupSettings
from metalcast_backup.dump import (
    PgTarget,
    check_tool_matches,
    count_rows,
    count_rows_in,
    create_database,
    database_exists,
    drop_database,
    exported_snapshot,
    pg_dump,
    pg_restore,
    server_info,
)
from metalcast_backup.manifest import (
    DatabaseInfo,
    DumpInfo,
    Manifest,
    Verification,
    backup_time,
    compare_counts,
    new_backup_id,
)
from metalcast_backup.retention import BackupState, RetentionPlan, plan_retention
from metalcast_backup.store import BackupStore, sha256_file
from metalcast_core import make_s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("metalcast.backup")
T = TypeVar("T")

# A backup still "running" after this long was killed mid-way: treated as failed.
STALE_RUNNING = timedelta(hours=12)


class BackupError(RuntimeError):
    """Base of this service's errors; the message says what failed and what was kept."""


class BackupFailed(BackupError):
    pass


class VerifyFailed(BackupError):
    pass


class RefusedError(BackupError):
    """An operation refused to run (e.g. it would overwrite the live database)."""


def tool_version() -> str:
    try:
        return importlib.metadata.version("metalcast-backup")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass
class RestoreReport:
    backup_id: str
    database: str
    replaced_existing: bool
    tables: int
    rows: int
    models: int
    models_bytes: int
    durations_s: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    records_synced: int = 0

    def lines(self) -> list[str]:
        out = [
            f"restored backup {self.backup_id} into database {self.database!r}"
            + (" (replacing the existing one)" if self.replaced_existing else ""),
            f"  {self.tables} tables, {self.rows} rows "
            f"(pg_restore {self.durations_s.get('pg_restore', 0):.1f} s)",
            f"  {self.models} model files, {self.models_bytes} bytes, back in the models bucket "
            f"({self.durations_s.get('models', 0):.1f} s)",
            f"  ops.backups re-synced from {self.records_synced} manifests",
        ]
        out += [f"  PROBLEM: {p}" for p in self.problems]
        return out


async def _timed(timer: dict[str, float], name: str, work: Awaitable[T]) -> T:
    begin = time.monotonic()
    try:
        return await work
    finally:
        timer[name] = round(time.monotonic() - begin, 4)


class BackupService:
    def __init__(self, settings: BackupSettings, client: S3Client | None = None) -> None:
        self.settings = settings
        self.cfg = settings.backup
        self.client = client if client is not None else make_s3_client(settings.s3)
        self.store = BackupStore(self.client, settings.s3.backups_bucket, self.cfg.prefix)
        self.live = PgTarget(settings.postgres.url)

    # --- records ----------------------------------------------------------------------------

    async def _record(self, work: Callable[[asyncpg.Connection], Awaitable[object]]) -> None:
        conn = await asyncpg.connect(self.live.url)
        try:
            await work(conn)
        finally:
            await conn.close()

    async def _save(self, manifest: Manifest) -> None:
        await self._record(
            lambda c: records.save_backup(
                c, manifest, bucket=self.store.bucket, prefix=self.store.root(manifest.backup_id)
            )
        )

    # --- run --------------------------------------------------------------------------------

    async def run(self) -> Manifest:
        """Make one backup. Raises :class:`BackupFailed` (after marking it failed) on error;
        a failed backup deletes nothing."""
        backup_id = new_backup_id()
        started = datetime.now(UTC)
        begin = time.monotonic()
        durations: dict[str, float] = {}
        manifest = Manifest(
            backup_id=backup_id,
            status="running",
            started_at=started,
            tool_version=tool_version(),
            models_bucket=self.settings.s3.models_bucket,
            models_archive=self.store.models_key(backup_id),
        )
        stage = "starting"
        try:
            stage = "reconciling earlier failed backups"
            await self.reconcile()
            stage = "writing the first manifest to S3"
            await asyncio.to_thread(self.store.write_manifest, manifest)
            stage = "recording the backup in ops.backups"
            await self._save(manifest)
            with tempfile.TemporaryDirectory(prefix="metalcast-backup-") as tmp:
                dump_file = Path(tmp) / "database.dump"
                stage = "dumping the database"
                await self._dump_and_copy(manifest, dump_file, durations)
                stage = "uploading the dump to S3"
                size = dump_file.stat().st_size
                digest, _ = await asyncio.gather(
                    asyncio.to_thread(sha256_file, dump_file),
                    _timed(
                        durations,
                        "upload_dump",
                        asyncio.to_thread(self.store.upload_dump, backup_id, dump_file),
                    ),
                )
            manifest.dump = DumpInfo(
                key=self.store.dump_key(backup_id),
                compression=f"gzip:{self.cfg.compression_level}",
                size_bytes=size,
                sha256=digest,
            )
            manifest.status = "complete"
            manifest.finished_at = datetime.now(UTC)
            durations["total"] = round(time.monotonic() - begin, 4)
            manifest.durations_s = durations
            stage = "writing the final manifest to S3"
            await asyncio.to_thread(self.store.write_manifest, manifest)
            stage = "recording the completed backup in ops.backups"
            await self._save(manifest)
        except Exception as exc:
            await self._mark_failed(manifest, durations, begin, f"{stage}: {exc}")
            raise BackupFailed(
                f"backup {backup_id} FAILED while {stage}: {exc}. It is marked failed; no "
                f"backup was deleted."
            ) from exc
        log.info(
            "backup %s complete: %d tables, %d rows, %d model files, %d bytes in %.1f s",
            backup_id,
            len(manifest.tables),
            manifest.total_rows,
            len(manifest.models),
            manifest.total_bytes,
            durations["total"],
        )
        return manifest

    async def _dump_and_copy(
        self, manifest: Manifest, dump_file: Path, durations: dict[str, float]
    ) -> None:
        pg_dump_tool = self.cfg.tool("pg_dump")
        conn = await asyncpg.connect(self.live.url)
        try:
            server = await server_info(conn)
            pg_dump_version = await check_tool_matches(pg_dump_tool, server)
            manifest.database = DatabaseInfo(
                name=self.live.database,
                server_version=server.version,
                server_version_num=server.version_num,
                pg_dump_version=pg_dump_version,
            )
            async with exported_snapshot(conn) as snapshot:
                dump = asyncio.create_task(
                    _timed(
                        durations,
                        "pg_dump",
                        pg_dump(
                            pg_dump_tool,
                            self.live,
                            dump_file,
                            snapshot=snapshot,
                            compression_level=self.cfg.compression_level,
                        ),
                    )
                )
                try:
                    # While pg_dump runs: the counts of the same snapshot, and the model files
                    # (listed after the snapshot, so every model the dump knows is there).
                    manifest.tables = await _timed(durations, "count_rows", count_rows(conn))
                    objects = await asyncio.to_thread(
                        self.store.list_models, self.settings.s3.models_bucket
                    )
                    manifest.models = await _timed(
                        durations,
                        "copy_models",
                        asyncio.to_thread(
                            self.store.copy_models_in,
                            self.settings.s3.models_bucket,
                            manifest.backup_id,
                            objects,
                            self.cfg.s3_workers,
                        ),
                    )
                except BaseException:
                    dump.cancel()
                    with contextlib.suppress(BaseException):
                        await dump
                    raise
                await dump
        finally:
            await conn.close()
        mismatched = [
            m.key for m in manifest.models if m.recorded_sha256 and m.recorded_sha256 != m.sha256
        ]
        if mismatched:
            raise BackupFailed(
                f"model files whose bytes differ from the sha256 the trainer recorded: "
                f"{', '.join(mismatched[:5])}"
            )

    async def _mark_failed(
        self, manifest: Manifest, durations: dict[str, float], begin: float, error: str
    ) -> None:
        manifest.status = "failed"
        manifest.error = error[:2000]
        manifest.finished_at = datetime.now(UTC)
        durations["total"] = round(time.monotonic() - begin, 4)
        manifest.durations_s = durations
        # Best effort: S3 or the database may be what failed.
        try:
            await asyncio.to_thread(self.store.write_manifest, manifest)
        except Exception as exc:
            log.warning("could not write the failed manifest of %s: %s", manifest.backup_id, exc)
        try:
            await self._save(manifest)
        except Exception as exc:
            log.warning("could not record the failure of %s: %s", manifest.backup_id, exc)
        log.error("backup %s failed: %s", manifest.backup_id, error)

    async def reconcile(self) -> list[str]:
        """Manifests left ``running`` by a backup that failed while S3 was unreachable (its
        database record says failed): rewrite them as failed. Returns their ids."""
        running = [
            m
            for _, m in await asyncio.to_thread(self.store.manifests)
            if m is not None and m.status == "running"
        ]
        if not running:
            return []
        conn = await asyncpg.connect(self.live.url)
        try:
            rows = await conn.fetch(
                "SELECT id, error FROM ops.backups WHERE status = 'failed' AND id = ANY($1)",
                [m.backup_id for m in running],
            )
        finally:
            await conn.close()
        errors = {r["id"]: r["error"] for r in rows}
        fixed = []
        for manifest in running:
            if manifest.backup_id in errors:
                manifest.status = "failed"
                manifest.error = errors[manifest.backup_id]
                await asyncio.to_thread(self.store.write_manifest, manifest)
                fixed.append(manifest.backup_id)
        return fixed

    # --- verify -----------------------------------------------------------------------------

    def _refuse_live(self, database: str) -> None:
        if database == self.live.database:
            raise RefusedError(f"refusing to use the live database {database!r} as scratch")

    async def verify(self, backup_id: str) -> Verification:
        """Restore into a scratch database, compare, drop it. Recorded whatever the outcome;
        returns the verification (``status`` passed or failed)."""
        manifest = await asyncio.to_thread(self.store.read_manifest, backup_id)
        if manifest is None:
            raise VerifyFailed(f"backup {backup_id} has no manifest in S3")
        if manifest.status != "complete" or manifest.dump is None:
            raise VerifyFailed(f"backup {backup_id} is {manifest.status}, not complete")
        scratch = f"{self.cfg.scratch_prefix}{secrets.token_hex(6)}"
        self._refuse_live(scratch)
        started = datetime.now(UTC)
        begin = time.monotonic()
        problems: list[str] = []
        error: str | None = None
        tables_checked = models_checked = 0
        admin = self.live.admin
        try:
            with tempfile.TemporaryDirectory(prefix="metalcast-verify-") as tmp:
                dump_file = Path(tmp) / "database.dump"
                await asyncio.to_thread(self.store.download_dump, backup_id, dump_file)
                digest = await asyncio.to_thread(sha256_file, dump_file)
                if digest != manifest.dump.sha256:
                    problems.append(f"dump sha256 {digest}, manifest says {manifest.dump.sha256}")
                await create_database(admin, scratch)
                try:
                    await pg_restore(
                        self.cfg.tool("pg_restore"),
                        admin.with_database(scratch),
                        dump_file,
                        jobs=self.cfg.restore_jobs,
                    )
                    counts = await count_rows_in(admin.with_database(scratch))
                finally:
                    await drop_database(admin, scratch)
            tables_checked = len(counts)
            problems += compare_counts(manifest.tables, counts)
            problems += await asyncio.to_thread(
                self.store.check_models, backup_id, manifest.models, self.cfg.s3_workers
            )
            models_checked = len(manifest.models)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
        verification = Verification(
            status="passed" if not problems and error is None else "failed",
            started_at=started,
            finished_at=datetime.now(UTC),
            scratch_database=scratch,
            duration_s=round(time.monotonic() - begin, 4),
            tables_checked=tables_checked,
            models_checked=models_checked,
            problems=problems,
            error=error,
        )
        manifest.verification = verification
        await asyncio.to_thread(self.store.write_manifest, manifest)
        await self._record(lambda c: records.save_verification(c, backup_id, verification))
        await self._save(manifest)
        log.info("verification of %s %s", backup_id, verification.status)
        return verification

    # --- prune ------------------------------------------------------------------------------

    async def states(self) -> list[BackupState]:
        now = datetime.now(UTC)
        out = []
        for backup_id, manifest in await asyncio.to_thread(self.store.manifests):
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
                None
                if manifest.verification is None
                else (manifest.verification.status == "passed")
            )
            out.append(BackupState(backup_id, status, manifest.started_at, verified))
        return out

    async def prune(self, newest: str) -> RetentionPlan:
        """Apply the retention rule after ``newest``; deletes only if it is proven."""
        plan = plan_retention(await self.states(), keep=self.cfg.keep, newest=newest)
        if plan.delete:
            conn = await asyncpg.connect(self.live.url)
            try:
                for backup_id in plan.delete:
                    await asyncio.to_thread(self.store.delete_backup, backup_id)
                    await records.mark_deleted(conn, backup_id, datetime.now(UTC))
                    log.info("deleted backup %s (retention)", backup_id)
            finally:
                await conn.close()
        log.info("retention: %s; deleted %d", plan.reason, len(plan.delete))
        return plan

    # --- list -------------------------------------------------------------------------------

    async def list(self) -> list[Manifest]:
        return [m for _, m in await asyncio.to_thread(self.store.manifests) if m is not None]

    # --- restore ----------------------------------------------------------------------------

    async def restore(
        self, backup_id: str, into: str, *, force: bool = False, models: bool = True
    ) -> RestoreReport:
        """Restore the database into ``into`` and the model files into the models bucket.

        ``into`` must not exist, unless ``force`` (then it is dropped first); the live
        database is only ever replaced with ``force``.
        """
        manifest = await asyncio.to_thread(self.store.read_manifest, backup_id)
        if manifest is None or manifest.status != "complete" or manifest.dump is None:
            state = "missing" if manifest is None else manifest.status
            raise RefusedError(f"backup {backup_id} is {state}: only complete backups restore")
        admin = self.live.admin
        if into == self.live.database and not force:
            raise RefusedError(
                f"{into!r} is the live database: pass --force to replace it with backup {backup_id}"
            )
        if into in {"postgres", "template0", "template1"}:
            raise RefusedError(f"refusing to restore into the system database {into!r}")
        exists = await database_exists(admin, into)
        if exists and not force:
            raise RefusedError(f"database {into!r} exists: pass --force to replace it")
        durations: dict[str, float] = {}
        target = admin.with_database(into)
        with tempfile.TemporaryDirectory(prefix="metalcast-restore-") as tmp:
            dump_file = Path(tmp) / "database.dump"
            await _timed(
                durations,
                "download",
                asyncio.to_thread(self.store.download_dump, backup_id, dump_file),
            )
            digest = await asyncio.to_thread(sha256_file, dump_file)
            if digest != manifest.dump.sha256:
                raise RefusedError(f"the dump of {backup_id} is corrupt (sha256 {digest})")
            if exists:
                await drop_database(admin, into)
            await create_database(admin, into)
            await _timed(
                durations,
                "pg_restore",
                pg_restore(
                    self.cfg.tool("pg_restore"), target, dump_file, jobs=self.cfg.restore_jobs
                ),
            )
        counts = await count_rows_in(target)
        problems = compare_counts(manifest.tables, counts)
        if models:
            await _timed(
                durations,
                "models",
                asyncio.to_thread(
                    self.store.copy_models_out,
                    self.settings.s3.models_bucket,
                    backup_id,
                    manifest.models,
                    self.cfg.s3_workers,
                ),
            )
        manifests = await self.list()
        conn = await asyncpg.connect(target.url)
        try:
            synced = await records.sync_from_manifests(
                conn, manifests, bucket=self.store.bucket, prefix=self.store.prefix
            )
        finally:
            await conn.close()
        return RestoreReport(
            backup_id=backup_id,
            database=into,
            replaced_existing=exists,
            tables=len(counts),
            rows=sum(counts.values()),
            models=len(manifest.models) if models else 0,
            models_bytes=manifest.models_bytes if models else 0,
            durations_s=durations,
            problems=problems,
            records_synced=synced,
        )

    # --- the scheduled flow -----------------------------------------------------------------

    async def run_verify_prune(self) -> tuple[Manifest, Verification, RetentionPlan]:
        """What ``metalcast-backup run`` does: back up, verify, then apply retention."""
        manifest = await self.run()
        verification = await self.verify(manifest.backup_id)
        if verification.status != "passed":
            raise VerifyFailed(verification_message(manifest.backup_id, verification))
        return manifest, verification, await self.prune(manifest.backup_id)


def verification_message(backup_id: str, v: Verification) -> str:
    what = "; ".join([*v.problems[:10], *([v.error] if v.error else [])])
    return (
        f"verification of backup {backup_id} FAILED: {what}. No backup was deleted; the "
        f"backup stays but does not count among the kept ones."
    )

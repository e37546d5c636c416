"""Verifying a backup: restore its dump into a scratch database with a random name, compare
every table's row count with the manifest, recompute every model file's sha256, drop the
scratch database. Recorded in the manifest and in ``ops.backup_verifications`` whatever the
outcome."""

from __future__ import annotations

import asyncio
import logging
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from metalcast_backup import records
from metalcast_backup.context import BackupContext
from metalcast_backup.dump import count_rows_in, create_database, drop_database, pg_restore
from metalcast_backup.errors import RefusedError, VerifyFailed
from metalcast_backup.manifest import Verification, compare_counts
from metalcast_backup.store import sha256_file

log = logging.getLogger("metalcast.backup")


def refuse_live(ctx: BackupContext, database: str) -> None:
    """Raise :class:`RefusedError` if ``database`` is the live one (never a scratch)."""
    if database == ctx.live.database:
        raise RefusedError(f"refusing to use the live database {database!r} as scratch")


async def verify_backup(ctx: BackupContext, backup_id: str) -> Verification:
    """Restore into a scratch database, compare, drop it. Recorded whatever the outcome;
    returns the verification (``status`` passed or failed)."""
    store, cfg = ctx.store, ctx.cfg
    manifest = await asyncio.to_thread(store.read_manifest, backup_id)
    if manifest is None:
        raise VerifyFailed(f"backup {backup_id} has no manifest in S3")
    if manifest.status != "complete" or manifest.dump is None:
        raise VerifyFailed(f"backup {backup_id} is {manifest.status}, not complete")
    scratch = f"{cfg.scratch_prefix}{secrets.token_hex(6)}"
    refuse_live(ctx, scratch)
    started = datetime.now(UTC)
    begin = time.monotonic()
    problems: list[str] = []
    error: str | None = None
    tables_checked = models_checked = 0
    admin = ctx.live.admin
    try:
        with tempfile.TemporaryDirectory(prefix="metalcast-verify-") as tmp:
            dump_file = Path(tmp) / "database.dump"
            await asyncio.to_thread(store.download_dump, backup_id, dump_file)
            digest = await asyncio.to_thread(sha256_file, dump_file)
            if digest != manifest.dump.sha256:
                problems.append(f"dump sha256 {digest}, manifest says {manifest.dump.sha256}")
            await create_database(admin, scratch)
            try:
                await pg_restore(
                    cfg.tool("pg_restore"),
                    admin.with_database(scratch),
                    dump_file,
                    jobs=cfg.restore_jobs,
                )
                counts = await count_rows_in(admin.with_database(scratch))
            finally:
                await drop_database(admin, scratch)
        tables_checked = len(counts)
        problems += compare_counts(manifest.tables, counts)
        problems += await asyncio.to_thread(
            store.check_models, backup_id, manifest.models, cfg.s3_workers
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
    await asyncio.to_thread(store.write_manifest, manifest)
    await ctx.record(lambda c: records.save_verification(c, backup_id, verification))
    await ctx.save(manifest)
    log.info("verification of %s %s", backup_id, verification.status)
    return verification


def verification_message(backup_id: str, v: Verification) -> str:
    what = "; ".join([*v.problems[:10], *([v.error] if v.error else [])])
    return (
        f"verification of backup {backup_id} FAILED: {what}. No backup was deleted; the "
        f"backup stays but does not count among the kept ones."
    )

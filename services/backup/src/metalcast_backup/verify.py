"""Verifying a backup: restore its dump (from the first target holding a complete copy, or
the one named) into a scratch database with a random name, compare every table's row count
with the manifest, recompute every model file's sha256, drop the scratch database; then check
that every other target it was written to holds the very same bytes. Recorded in the manifest
(on each target holding it) and in ``ops.backup_verifications`` whatever the outcome."""

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
from metalcast_backup.files import check_copies, fetch
from metalcast_backup.manifest import Verification, compare_counts
from metalcast_backup.store import DUMP, MODELS_TAR, check_models_tar, sha256_file

log = logging.getLogger("metalcast.backup")


def refuse_live(ctx: BackupContext, database: str) -> None:
    """Raise :class:`RefusedError` if ``database`` is the live one (never a scratch)."""
    if database == ctx.live.database:
        raise RefusedError(f"refusing to use the live database {database!r} as scratch")


async def verify_backup(
    ctx: BackupContext, backup_id: str, source: str | None = None
) -> Verification:
    """Restore into a scratch database, compare, drop it; check the other targets' copies.
    ``source`` names the one target to read and check (default: read the first holding a
    complete copy, and check every target's).
    Recorded whatever the outcome; returns the verification (``status`` passed or failed)."""
    cfg = ctx.cfg
    # With a source, only that copy is verified (and its manifest alone records it).
    targets = ctx.targets.only(source)
    found = await asyncio.to_thread(targets.source, backup_id)
    if found is None:
        raise VerifyFailed(f"backup {backup_id} has no manifest on any target")
    store, manifest = found
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
            dump_file, models_file = Path(tmp) / DUMP, Path(tmp) / MODELS_TAR
            await asyncio.to_thread(fetch, store, manifest, DUMP, dump_file, ctx.keys)
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
            if manifest.models or manifest.stored:
                await asyncio.to_thread(fetch, store, manifest, MODELS_TAR, models_file, ctx.keys)
                problems += await asyncio.to_thread(check_models_tar, models_file, manifest.models)
            models_checked = len(manifest.models)
        problems += await asyncio.to_thread(check_copies, targets, manifest, besides=store)
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
    await asyncio.to_thread(targets.update_manifest, manifest)
    await ctx.record(lambda c: records.save_verification(c, backup_id, verification))
    await ctx.save(manifest)
    log.info("verification of %s (from %s) %s", backup_id, store.name, verification.status)
    return verification


def verification_message(backup_id: str, v: Verification) -> str:
    what = "; ".join([*v.problems[:10], *([v.error] if v.error else [])])
    return (
        f"verification of backup {backup_id} FAILED: {what}. No backup was deleted; the "
        f"backup stays but does not count among the kept ones."
    )

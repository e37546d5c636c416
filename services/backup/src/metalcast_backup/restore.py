"""Restoring a backup: the dump into a named database (the live one, or any existing one, only
with ``force``), the model files back into the models bucket with their sha256 metadata (only
with the live database: a scratch restore never touches the live models bucket), and
``ops.backups`` rebuilt from the manifests in S3 so the restored database lists its backups.
The files come from the first target holding a complete copy (or the one named): with the
primary backups bucket gone, from the off-box one.

Before anything is replaced, the consumers' positions in the backup are checked against what
Kafka still keeps (:mod:`metalcast_backup.positions`): after the restore the sink re-reads
everything published since the backup, and what retention already deleted is said plainly;
a restore into the live database that would lose messages is refused without
``accept_loss``."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from metalcast_backup import records
from metalcast_backup.context import BackupContext, timed
from metalcast_backup.dump import (
    count_rows_in,
    create_database,
    database_exists,
    drop_database,
    pg_restore,
    restore_definer_owners,
)
from metalcast_backup.errors import CopyError, RefusedError
from metalcast_backup.files import fetch
from metalcast_backup.manifest import Manifest, compare_counts
from metalcast_backup.positions import check_positions
from metalcast_backup.store import DUMP, MODELS_TAR, sha256_file

SYSTEM_DATABASES = frozenset({"postgres", "template0", "template1"})


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
    positions: list[str] = field(default_factory=list)  # one line per partition checked
    models_restored: bool = False  # whether the model files went back (the live database)
    source: str = "primary"  # the target the files came from

    def lines(self) -> list[str]:
        out = [
            f"restored backup {self.backup_id} into database {self.database!r}"
            + (" (replacing the existing one)" if self.replaced_existing else "")
            + f", from target {self.source}",
            f"  {self.tables} tables, {self.rows} rows "
            f"(pg_restore {self.durations_s.get('pg_restore', 0):.1f} s)",
            (
                f"  {self.models} model files, {self.models_bytes} bytes, back in the models "
                f"bucket ({self.durations_s.get('models', 0):.1f} s)"
                if self.models_restored
                else "  model files left in the backup (the models bucket was not touched)"
            ),
            f"  ops.backups re-synced from {self.records_synced} manifests",
        ]
        out += [f"  {line}" for line in self.positions]
        out += [f"  PROBLEM: {p}" for p in self.problems]
        return out


async def restore_backup(
    ctx: BackupContext,
    backup_id: str,
    into: str,
    *,
    force: bool = False,
    models: bool | None = None,
    accept_loss: bool = False,
    source: str | None = None,
) -> RestoreReport:
    """Restore the database into ``into`` and, with the live database, the model files into
    the models bucket (``models``: default yes for the live database; a scratch database
    never gets them, the live bucket is not its own).

    ``into`` must not exist, unless ``force`` (then it is dropped first); the live
    database is only ever replaced with ``force``, and only if Kafka still holds everything
    the sink must re-read (or ``accept_loss``). ``source`` names the target to read from
    (default: the first holding a complete copy).
    """
    cfg = ctx.cfg
    found = await asyncio.to_thread(ctx.targets.only(source).source, backup_id)
    store, manifest = found if found is not None else (None, None)
    if store is None or manifest is None or manifest.status != "complete" or manifest.dump is None:
        state = "missing" if manifest is None else manifest.status
        raise RefusedError(f"backup {backup_id} is {state}: only complete backups restore")
    admin = ctx.live.admin
    if into == ctx.live.database and not force:
        raise RefusedError(
            f"{into!r} is the live database: pass --force to replace it with backup {backup_id}"
        )
    if into in SYSTEM_DATABASES:
        raise RefusedError(f"refusing to restore into the system database {into!r}")
    exists = await database_exists(admin, into)
    if exists and not force:
        raise RefusedError(f"database {into!r} exists: pass --force to replace it")
    live = into == ctx.live.database
    if models and not live:
        raise RefusedError(
            f"{into!r} is not the live database: its restore leaves the live models bucket "
            "alone (restore the model files with the live database)"
        )
    models = live if models is None else models
    positions = await _check_positions(ctx, manifest, refuse_loss=live and not accept_loss)
    durations: dict[str, float] = {}
    target = admin.with_database(into)
    with tempfile.TemporaryDirectory(prefix="metalcast-restore-") as tmp:
        dump_file, models_file = Path(tmp) / DUMP, Path(tmp) / MODELS_TAR
        try:
            await timed(
                durations,
                "download",
                asyncio.to_thread(fetch, store, manifest, DUMP, dump_file, ctx.keys),
            )
            if models and manifest.models:
                await asyncio.to_thread(fetch, store, manifest, MODELS_TAR, models_file, ctx.keys)
        except CopyError as exc:
            raise RefusedError(f"cannot restore {backup_id} from {store.name}: {exc}") from exc
        digest = await asyncio.to_thread(sha256_file, dump_file)
        if digest != manifest.dump.sha256:
            raise RefusedError(f"the dump of {backup_id} is corrupt (sha256 {digest})")
        if exists:
            await drop_database(admin, into)
        await create_database(admin, into)
        await timed(
            durations,
            "pg_restore",
            pg_restore(cfg.tool("pg_restore"), target, dump_file, jobs=cfg.restore_jobs),
        )
        if models and manifest.models:
            await timed(
                durations,
                "models",
                asyncio.to_thread(
                    ctx.models.put_back, models_file, manifest.models, cfg.s3_workers
                ),
            )
    counts = await count_rows_in(target)
    problems = compare_counts(manifest.tables, counts) + await restore_definer_owners(target)
    manifests = await ctx.manifests()
    conn = await asyncpg.connect(target.url)
    try:
        synced = await records.sync_from_manifests(
            conn, manifests, bucket=ctx.store.bucket, prefix=ctx.store.prefix
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
        positions=positions,
        models_restored=bool(models),
        source=store.name,
    )


async def _check_positions(
    ctx: BackupContext, manifest: Manifest, *, refuse_loss: bool
) -> list[str]:
    """One line per partition the backup holds a position for; refuses (``refuse_loss``) if
    Kafka no longer has messages the restored database would need re-read, or cannot say."""
    try:
        checks = await check_positions(ctx.log_bounds, manifest.positions)
    except Exception as exc:  # the brokers are away: nobody can tell what is lost
        if refuse_loss:
            raise RefusedError(
                f"cannot check what Kafka still holds ({type(exc).__name__}: {exc}); "
                "pass --accept-loss to restore without that check"
            ) from exc
        return [f"not checked against Kafka: {type(exc).__name__}: {exc}"]
    lost = [c for c in checks if c.lost]
    if lost and refuse_loss:
        raise RefusedError(
            "restoring this backup into the live database would lose what Kafka no longer "
            "holds:\n  "
            + "\n  ".join(c.line() for c in lost)
            + "\npass --accept-loss to restore anyway"
        )
    return [c.line() for c in checks]

"""Making a backup: ``pg_dump`` (one snapshot, row counts from the same snapshot) and a copy
of every model file, encrypted when a key is set, under ``<prefix><id>/`` on every target (the
backups bucket, and the off-box bucket when configured); the manifest is written first
(``running``) and last (``complete``), on each. A backup is complete only once it is on every
target. A backup that fails is marked failed in S3 and in ``ops.backups``, and deletes
nothing."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from metalcast_backup.context import BackupContext, timed
from metalcast_backup.dump import (
    check_tool_matches,
    count_rows,
    exported_snapshot,
    pg_dump,
    server_info,
)
from metalcast_backup.errors import BackupFailed
from metalcast_backup.files import encryption_info, seal, stored_file
from metalcast_backup.manifest import DatabaseInfo, DumpInfo, Manifest, new_backup_id
from metalcast_backup.positions import read_positions
from metalcast_backup.store import DUMP, MODELS_TAR, sha256_file

log = logging.getLogger("metalcast.backup")


def tool_version() -> str:
    try:
        return importlib.metadata.version("metalcast-backup")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


async def make_backup(ctx: BackupContext) -> Manifest:
    """Make one backup. Raises :class:`BackupFailed` (after marking it failed) on error;
    a failed backup deletes nothing."""
    store, targets, cfg = ctx.store, ctx.targets, ctx.cfg
    backup_id = new_backup_id()
    started = datetime.now(UTC)
    begin = time.monotonic()
    durations: dict[str, float] = {}
    manifest = Manifest(
        backup_id=backup_id,
        status="running",
        started_at=started,
        tool_version=tool_version(),
        models_bucket=ctx.models_bucket,
        models_archive=store.models_key(backup_id),
        encryption=encryption_info(ctx.keys) if ctx.keys is not None else None,
    )
    stage = "starting"
    try:
        stage = "reconciling earlier failed backups"
        await reconcile(ctx)
        stage = "preparing the targets (off-box bucket: versioning, object lock)"
        manifest.targets = await asyncio.to_thread(targets.prepare)
        stage = "writing the first manifest to every target"
        await asyncio.to_thread(targets.write_manifest, manifest)
        stage = "recording the backup in ops.backups"
        await ctx.save(manifest)
        with tempfile.TemporaryDirectory(prefix="metalcast-backup-") as tmp:
            dump_file, models_file = Path(tmp) / DUMP, Path(tmp) / MODELS_TAR
            stage = "dumping the database"
            await _dump_and_copy(ctx, manifest, dump_file, models_file, durations)
            size = dump_file.stat().st_size
            digest = await asyncio.to_thread(sha256_file, dump_file)
            stage = "encrypting"
            dump_file, models_file = await timed(
                durations,
                "encrypt",
                asyncio.gather(
                    asyncio.to_thread(seal, ctx.keys, dump_file),
                    asyncio.to_thread(seal, ctx.keys, models_file),
                ),
            )
            stage = f"uploading to every target ({', '.join(targets.names)})"
            stored = await asyncio.gather(
                asyncio.to_thread(stored_file, DUMP, dump_file),
                asyncio.to_thread(stored_file, MODELS_TAR, models_file),
                timed(
                    durations,
                    "upload_dump",
                    asyncio.to_thread(targets.upload, backup_id, DUMP, dump_file),
                ),
                timed(
                    durations,
                    "upload_models",
                    asyncio.to_thread(targets.upload, backup_id, MODELS_TAR, models_file),
                ),
            )
        manifest.stored = [stored[0], stored[1]]
        manifest.dump = DumpInfo(
            key=store.dump_key(backup_id),
            compression=f"gzip:{cfg.compression_level}",
            size_bytes=size,
            sha256=digest,
        )
        manifest.status = "complete"
        manifest.finished_at = datetime.now(UTC)
        durations["total"] = round(time.monotonic() - begin, 4)
        manifest.durations_s = durations
        stage = "writing the final manifest to every target"
        await asyncio.to_thread(targets.write_manifest, manifest)
        stage = "recording the completed backup in ops.backups"
        await ctx.save(manifest)
    except Exception as exc:
        await _mark_failed(ctx, manifest, durations, begin, f"{stage}: {exc}")
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
    ctx: BackupContext,
    manifest: Manifest,
    dump_file: Path,
    models_file: Path,
    durations: dict[str, float],
) -> None:
    cfg, live = ctx.cfg, ctx.live
    pg_dump_tool = cfg.tool("pg_dump")
    conn = await asyncpg.connect(live.url)
    try:
        server = await server_info(conn)
        pg_dump_version = await check_tool_matches(pg_dump_tool, server)
        manifest.database = DatabaseInfo(
            name=live.database,
            server_version=server.version,
            server_version_num=server.version_num,
            pg_dump_version=pg_dump_version,
        )
        async with exported_snapshot(conn) as snapshot:
            dump = asyncio.create_task(
                timed(
                    durations,
                    "pg_dump",
                    pg_dump(
                        pg_dump_tool,
                        live,
                        dump_file,
                        snapshot=snapshot,
                        compression_level=cfg.compression_level,
                    ),
                )
            )
            try:
                # While pg_dump runs: the counts of the same snapshot, and the model files
                # (listed after the snapshot, so every model the dump knows is there).
                manifest.tables = await timed(durations, "count_rows", count_rows(conn))
                manifest.positions = await read_positions(conn)
                objects = await asyncio.to_thread(ctx.models.objects)
                manifest.models = await timed(
                    durations,
                    "copy_models",
                    asyncio.to_thread(ctx.models.write_tar, objects, cfg.s3_workers, models_file),
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
    ctx: BackupContext,
    manifest: Manifest,
    durations: dict[str, float],
    begin: float,
    error: str,
) -> None:
    manifest.status = "failed"
    manifest.error = error[:2000]
    manifest.finished_at = datetime.now(UTC)
    durations["total"] = round(time.monotonic() - begin, 4)
    manifest.durations_s = durations
    # Best effort: S3 or the database may be what failed. Only where the first manifest is.
    try:
        await asyncio.to_thread(ctx.targets.update_manifest, manifest)
    except Exception as exc:
        log.warning("could not write the failed manifest of %s: %s", manifest.backup_id, exc)
    try:
        await ctx.save(manifest)
    except Exception as exc:
        log.warning("could not record the failure of %s: %s", manifest.backup_id, exc)
    log.error("backup %s failed: %s", manifest.backup_id, error)


async def reconcile(ctx: BackupContext) -> list[str]:
    """Manifests left ``running`` by a backup that failed while S3 was unreachable (its
    database record says failed): rewrite them as failed. Returns their ids."""
    running = [m for m in await asyncio.to_thread(ctx.targets.manifests) if m.status == "running"]
    if not running:
        return []
    conn = await asyncpg.connect(ctx.live.url)
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
            await asyncio.to_thread(ctx.targets.update_manifest, manifest)
            fixed.append(manifest.backup_id)
    return fixed

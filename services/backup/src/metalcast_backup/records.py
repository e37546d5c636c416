"""The ``ops.backups`` and ``ops.backup_verifications`` tables: what the API and dashboard read.

S3 manifests are the source of truth; these rows mirror them (and :func:`sync_from_manifests`
rebuilds them, e.g. in a database just restored from an older backup).
"""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg

from metalcast_backup.manifest import Manifest, Verification

_UPSERT = """
INSERT INTO ops.backups (
    id, status, started_at, finished_at, bucket, prefix, database_name, server_version,
    tables, total_rows, models, dump_bytes, models_bytes, total_bytes, duration_s, error,
    manifest
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::jsonb)
ON CONFLICT (id) DO UPDATE SET
    status = EXCLUDED.status, finished_at = EXCLUDED.finished_at,
    database_name = EXCLUDED.database_name, server_version = EXCLUDED.server_version,
    tables = EXCLUDED.tables, total_rows = EXCLUDED.total_rows, models = EXCLUDED.models,
    dump_bytes = EXCLUDED.dump_bytes, models_bytes = EXCLUDED.models_bytes,
    total_bytes = EXCLUDED.total_bytes, duration_s = EXCLUDED.duration_s,
    error = EXCLUDED.error, manifest = EXCLUDED.manifest
"""


async def save_backup(
    conn: asyncpg.Connection, manifest: Manifest, *, bucket: str, prefix: str
) -> None:
    """Insert or update the row of ``manifest``'s backup."""
    duration = sum(manifest.durations_s.get(k, 0.0) for k in ("total",))
    await conn.execute(
        _UPSERT,
        manifest.backup_id,
        manifest.status,
        manifest.started_at,
        manifest.finished_at,
        bucket,
        prefix,
        manifest.database.name if manifest.database else None,
        manifest.database.server_version if manifest.database else None,
        len(manifest.tables) if manifest.tables else None,
        manifest.total_rows if manifest.tables else None,
        len(manifest.models),
        manifest.dump_bytes,
        manifest.models_bytes,
        manifest.total_bytes,
        duration or None,
        manifest.error,
        manifest.model_dump_json(),
    )


async def save_verification(
    conn: asyncpg.Connection, backup_id: str, verification: Verification
) -> None:
    await conn.execute(
        """
        INSERT INTO ops.backup_verifications (
            backup_id, status, started_at, finished_at, duration_s, scratch_database,
            tables_checked, models_checked, problems, error
        ) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)
        """,
        backup_id,
        verification.status,
        verification.started_at,
        verification.finished_at,
        verification.duration_s,
        verification.scratch_database,
        verification.tables_checked,
        verification.models_checked,
        json.dumps(verification.problems),
        verification.error,
    )


async def mark_deleted(conn: asyncpg.Connection, backup_id: str, when: datetime) -> None:
    await conn.execute(
        "UPDATE ops.backups SET status = 'deleted', deleted_at = $2 WHERE id = $1",
        backup_id,
        when,
    )


async def sync_from_manifests(
    conn: asyncpg.Connection, manifests: list[Manifest], *, bucket: str, prefix: str
) -> int:
    """Upsert a row (and the newest verification) for each manifest; rows whose backup is
    gone from S3 are marked deleted. Returns how many rows were written."""
    async with conn.transaction():
        for manifest in manifests:
            await save_backup(conn, manifest, bucket=bucket, prefix=prefix)
            v = manifest.verification
            if v is not None:
                seen = await conn.fetchval(
                    "SELECT 1 FROM ops.backup_verifications WHERE backup_id = $1 "
                    "AND started_at = $2",
                    manifest.backup_id,
                    v.started_at,
                )
                if not seen:
                    await save_verification(conn, manifest.backup_id, v)
        await conn.execute(
            "UPDATE ops.backups SET status = 'deleted', deleted_at = coalesce(deleted_at, now()) "
            "WHERE status <> 'deleted' AND NOT (id = ANY($1::text[]))",
            [m.backup_id for m in manifests],
        )
    return len(manifests)

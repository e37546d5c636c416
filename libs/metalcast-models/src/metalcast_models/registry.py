"""The model registry: versions in ``ml.model_versions``, files in S3, and the production
pointer per symbol (``ml.production_models``) with every move in ``ml.production_history``.

Used by the trainer (record and promote), the CLI and the API (list, show, roll back).
Functions take an asyncpg connection; those that move the pointer run in a transaction.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg

from metalcast_models.artifacts import check_artifact

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class RollbackRefused(Exception):
    """The pointer was not moved: the reason says why."""


@dataclass(frozen=True)
class VersionInfo:
    id: int
    symbol: str
    version: int
    run_id: int
    family: str
    model_class: str
    hyperparameters: dict[str, Any]
    fitted_params: dict[str, Any]
    metrics: dict[str, Any]
    window_start: datetime
    window_end: datetime
    n_observations: int
    artifact_uri: str
    sha256: str
    size_bytes: int
    created_at: datetime
    in_production: bool


@dataclass(frozen=True)
class PointerMove:
    symbol: str
    from_version: int | None
    to_version: int
    action: str
    changed_by: str
    changed_at: datetime


_SELECT = """
SELECT v.*, (p.model_version_id IS NOT NULL) AS in_production
FROM ml.model_versions AS v
LEFT JOIN ml.production_models AS p ON p.model_version_id = v.id
"""


def _info(row: Mapping[str, Any]) -> VersionInfo:
    def js(value: Any) -> dict[str, Any]:
        return json.loads(value) if isinstance(value, str) else dict(value or {})

    return VersionInfo(
        id=row["id"],
        symbol=row["symbol"],
        version=row["version"],
        run_id=row["run_id"],
        family=row["family"],
        model_class=row["model_class"],
        hyperparameters=js(row["hyperparameters"]),
        fitted_params=js(row["fitted_params"]),
        metrics=js(row["metrics"]),
        window_start=row["window_start"],
        window_end=row["window_end"],
        n_observations=row["n_observations"],
        artifact_uri=row["artifact_uri"],
        sha256=row["sha256"],
        size_bytes=row["size_bytes"],
        created_at=row["created_at"],
        in_production=row["in_production"],
    )


async def production(conn: asyncpg.Connection) -> list[VersionInfo]:
    """The version in production for every symbol that has one."""
    rows = await conn.fetch(_SELECT.replace("LEFT JOIN", "JOIN") + " ORDER BY v.symbol")
    return [_info(r) for r in rows]


async def versions(conn: asyncpg.Connection, symbol: str) -> list[VersionInfo]:
    """Every version of ``symbol``, newest first."""
    rows = await conn.fetch(_SELECT + " WHERE v.symbol = $1 ORDER BY v.version DESC", symbol)
    return [_info(r) for r in rows]


async def get_version(conn: asyncpg.Connection, symbol: str, version: int) -> VersionInfo | None:
    row = await conn.fetchrow(_SELECT + " WHERE v.symbol = $1 AND v.version = $2", symbol, version)
    return None if row is None else _info(row)


async def next_version(conn: asyncpg.Connection, symbol: str) -> int:
    value = await conn.fetchval(
        "SELECT coalesce(max(version), 0) + 1 FROM ml.model_versions WHERE symbol = $1", symbol
    )
    return int(value)


async def record_version(
    conn: asyncpg.Connection,
    *,
    symbol: str,
    version: int,
    run_id: int,
    family: str,
    model_class: str,
    hyperparameters: Mapping[str, Any],
    fitted_params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    window_start: datetime,
    window_end: datetime,
    n_observations: int,
    artifact_uri: str,
    sha256: str,
    size_bytes: int,
) -> int:
    """Insert a version; returns its id."""
    value = await conn.fetchval(
        """
        INSERT INTO ml.model_versions
            (symbol, version, run_id, family, model_class, hyperparameters, fitted_params,
             metrics, window_start, window_end, n_observations, artifact_uri, sha256,
             size_bytes)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb, $9, $10, $11, $12, $13, $14)
        RETURNING id
        """,
        symbol,
        version,
        run_id,
        family,
        model_class,
        json.dumps(hyperparameters),
        json.dumps(fitted_params),
        json.dumps(metrics),
        window_start,
        window_end,
        n_observations,
        artifact_uri,
        sha256,
        size_bytes,
    )
    return int(value)


async def move_pointer(
    conn: asyncpg.Connection,
    symbol: str,
    version_id: int,
    *,
    action: str,
    by: str,
    note: str | None = None,
) -> PointerMove:
    """Point ``symbol``'s production at ``version_id`` and record the move."""
    async with conn.transaction():
        current = await conn.fetchrow(
            """
            SELECT p.model_version_id, v.version
            FROM ml.production_models AS p JOIN ml.model_versions AS v ON v.id = p.model_version_id
            WHERE p.symbol = $1
            FOR UPDATE OF p
            """,
            symbol,
        )
        target = await conn.fetchval(
            "SELECT version FROM ml.model_versions WHERE id = $1 AND symbol = $2",
            version_id,
            symbol,
        )
        if target is None:
            raise RollbackRefused(f"version id {version_id} is not a version of {symbol}")
        changed_at = await conn.fetchval(
            """
            INSERT INTO ml.production_models (symbol, model_version_id, updated_at, updated_by)
            VALUES ($1, $2, now(), $3)
            ON CONFLICT (symbol) DO UPDATE
                SET model_version_id = EXCLUDED.model_version_id,
                    updated_at = EXCLUDED.updated_at,
                    updated_by = EXCLUDED.updated_by
            RETURNING updated_at
            """,
            symbol,
            version_id,
            by,
        )
        await conn.execute(
            """
            INSERT INTO ml.production_history
                (symbol, from_version_id, to_version_id, action, changed_by, changed_at, note)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            """,
            symbol,
            None if current is None else current["model_version_id"],
            version_id,
            action,
            by,
            changed_at,
            note,
        )
    return PointerMove(
        symbol=symbol,
        from_version=None if current is None else current["version"],
        to_version=int(target),
        action=action,
        changed_by=by,
        changed_at=changed_at,
    )


def parse_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return parts.netloc, parts.path.lstrip("/")


def download_artifact(s3: S3Client, artifact_uri: str, dest_dir: str | Path) -> Path:
    """Download a model file into ``dest_dir``, keeping its file name."""
    bucket, key = parse_uri(artifact_uri)
    target = Path(dest_dir) / Path(key).name
    target.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, key, str(target))
    return target


def verify_version(s3: S3Client, info: VersionInfo, work_dir: str | Path) -> str | None:
    """``None`` if the version's file downloads, matches its sha256, reloads and predicts."""
    try:
        path = download_artifact(s3, info.artifact_uri, Path(work_dir) / f"v{info.id}")
    except Exception as exc:
        return f"artifact {info.artifact_uri} cannot be downloaded: {exc}"
    return check_artifact(path, expected_sha256=info.sha256)


async def rollback(
    conn: asyncpg.Connection,
    s3: S3Client,
    symbol: str,
    to_version: int | None,
    by: str,
    work_dir: str | Path,
) -> PointerMove:
    """Move ``symbol``'s production pointer to ``to_version`` (default: the version before
    the current one) after checking that its file loads. Refused moves raise
    :class:`RollbackRefused` and leave the pointer where it was."""
    all_versions = await versions(conn, symbol)
    if not all_versions:
        raise RollbackRefused(f"{symbol} has no model versions")
    current = next((v for v in all_versions if v.in_production), None)
    if to_version is None:
        if current is None:
            raise RollbackRefused(f"{symbol} has no production version to roll back from")
        older = [v for v in all_versions if v.version < current.version]
        if not older:
            raise RollbackRefused(f"{symbol} v{current.version} is the oldest version")
        target = older[0]
    else:
        found = next((v for v in all_versions if v.version == to_version), None)
        if found is None:
            known = ", ".join(str(v.version) for v in all_versions)
            raise RollbackRefused(f"{symbol} has no version {to_version} (versions: {known})")
        target = found
    if current is not None and target.id == current.id:
        raise RollbackRefused(f"{symbol} v{target.version} is already in production")
    problem = await asyncio.to_thread(verify_version, s3, target, work_dir)
    if problem is not None:
        raise RollbackRefused(f"{symbol} v{target.version}: {problem}")
    return await move_pointer(
        conn,
        symbol,
        target.id,
        action="rollback",
        by=by,
        note=f"rollback to v{target.version}",
    )

"""The model registry: versions in ``ml.model_versions``, files in S3, and the production
pointer per symbol (``ml.production_models``) with every move in ``ml.production_history``.

Used by the trainer (record and promote), the CLI and the API (list, show, roll back).
Functions take an asyncpg connection; those that move the pointer run in a transaction.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg

from metalcast_core import ProductionChanged
from metalcast_models.artifacts import SavedArtifact, check_artifact
from metalcast_models.fitting import FitResult, jsonable

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
    candidate: str | None = None
    candidate_key: str | None = None
    window_hash: str | None = None
    window_hours: int | None = None
    backtest: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    decision: str | None = None
    deleted_at: datetime | None = None
    ever_production: bool = False


@dataclass(frozen=True)
class PointerMove:
    symbol: str
    from_version: int | None
    to_version: int
    action: str
    changed_by: str
    changed_at: datetime
    pinned: bool = False
    reason: str | None = None

    def event(self) -> ProductionChanged:
        return ProductionChanged(
            symbol=self.symbol,
            action=self.action,
            from_version=self.from_version,
            to_version=self.to_version,
            pinned=self.pinned,
            changed_by=self.changed_by,
            reason=self.reason,
            changed_at=self.changed_at,
        )


@dataclass(frozen=True)
class Pin:
    symbol: str
    version: int
    pinned_at: datetime
    pinned_by: str
    reason: str | None


_SELECT = """
SELECT v.*, (p.model_version_id IS NOT NULL) AS in_production,
       EXISTS (SELECT 1 FROM ml.production_history AS h WHERE h.to_version_id = v.id)
           AS ever_production
FROM ml.model_versions AS v
LEFT JOIN ml.production_models AS p ON p.model_version_id = v.id
"""


def _info(record: Mapping[str, Any]) -> VersionInfo:
    row = dict(record)

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
        candidate=row.get("candidate"),
        candidate_key=row.get("candidate_key"),
        window_hash=row.get("window_hash"),
        window_hours=row.get("window_hours"),
        backtest=js(row.get("backtest")),
        calibration=js(row.get("calibration")),
        decision=row.get("decision"),
        deleted_at=row.get("deleted_at"),
        ever_production=bool(row.get("ever_production", False)),
    )


async def production(
    conn: asyncpg.Connection, symbols: Sequence[str] | None = None
) -> list[VersionInfo]:
    """The version in production for every symbol that has one (of ``symbols``, if given)."""
    query = _SELECT.replace("LEFT JOIN", "JOIN")
    if symbols is None:
        rows = await conn.fetch(query + " ORDER BY v.symbol")
    else:
        rows = await conn.fetch(
            query + " WHERE p.symbol = ANY($1::text[]) ORDER BY v.symbol", list(symbols)
        )
    return [_info(r) for r in rows]


async def versions(conn: asyncpg.Connection, symbol: str) -> list[VersionInfo]:
    """Every version of ``symbol``, newest first."""
    rows = await conn.fetch(_SELECT + " WHERE v.symbol = $1 ORDER BY v.version DESC", symbol)
    return [_info(r) for r in rows]


async def get_version(conn: asyncpg.Connection, symbol: str, version: int) -> VersionInfo | None:
    row = await conn.fetchrow(_SELECT + " WHERE v.symbol = $1 AND v.version = $2", symbol, version)
    return None if row is None else _info(row)


async def next_version(conn: asyncpg.Connection, symbol: str) -> int:
    return (await next_versions(conn, [symbol]))[symbol]


async def next_versions(conn: asyncpg.Connection, symbols: Sequence[str]) -> dict[str, int]:
    """The next version number of each symbol (1 for a symbol without versions)."""
    rows = await conn.fetch(
        """
        SELECT s.symbol, coalesce(max(v.version), 0) + 1 AS next
        FROM unnest($1::text[]) AS s (symbol)
        LEFT JOIN ml.model_versions AS v ON v.symbol = s.symbol
        GROUP BY s.symbol
        """,
        list(symbols),
    )
    return {r["symbol"]: int(r["next"]) for r in rows}


async def lock_symbols(conn: asyncpg.Connection, symbols: Sequence[str]) -> None:
    """One version writer per symbol at a time (versions are numbered without gaps): the
    transaction's advisory locks, taken in one order so that two writers never deadlock."""
    await conn.execute(
        """
        SELECT pg_advisory_xact_lock(hashtext('model:' || symbol))
        FROM (SELECT DISTINCT unnest($1::text[]) AS symbol ORDER BY 1) AS s
        """,
        list(symbols),
    )


async def reserve_version(conn: asyncpg.Connection, symbol: str) -> int:
    """In a transaction: the next version number of ``symbol``, held for this transaction
    (its advisory lock, :func:`lock_symbols`) until the version is recorded."""
    await lock_symbols(conn, [symbol])
    return await next_version(conn, symbol)


def upload_artifact(
    s3: S3Client,
    bucket: str,
    prefix: str,
    symbol: str,
    version: int,
    path: str | Path,
    *,
    sha256: str,
    run_id: int,
) -> str:
    """Upload a version's model file to ``{prefix}{symbol}/{version}/{file name}``, its sha256
    and run id as metadata (one PUT: model files are small); its ``s3://`` URI. Blocking:
    call it in a thread."""
    file = Path(path)
    key = f"{prefix}{symbol}/{version}/{file.name}"
    with file.open("rb") as body:
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            Metadata={"sha256": sha256, "run-id": str(run_id)},
        )
    return f"s3://{bucket}/{key}"


@dataclass(frozen=True)
class NewVersion:
    """A version to record (``ml.model_versions``), before it has an id."""

    symbol: str
    version: int
    run_id: int
    family: str
    model_class: str
    hyperparameters: Mapping[str, Any]
    fitted_params: Mapping[str, Any]
    metrics: Mapping[str, Any]
    window_start: datetime
    window_end: datetime
    n_observations: int
    artifact_uri: str
    sha256: str
    size_bytes: int
    candidate: str | None = None
    candidate_key: str | None = None
    window_hash: str | None = None
    window_hours: int | None = None
    backtest: Mapping[str, Any] | str | None = None  # a mapping, or its JSON text
    calibration: Mapping[str, Any] | None = None
    decision: str | None = None


def version_of_fit(
    result: FitResult,
    saved: SavedArtifact,
    *,
    symbol: str,
    version: int,
    run_id: int,
    model_class: str,
    artifact_uri: str,
    candidate: str,
    candidate_key: str,
    window_hash: str,
    backtest: Mapping[str, Any] | str | None,
    calibration: Mapping[str, Any],
    decision: str,
) -> NewVersion:
    """The version of ``symbol`` a successful fit and its saved file make: the fit's family,
    parameters, metrics and window; the file's URI, sha256 and size; the decision that chose
    it."""
    if result.window_start is None or result.window_end is None:
        raise ValueError(f"{result.ticker}: a fit without a window cannot be a version")
    return NewVersion(
        symbol=symbol,
        version=version,
        run_id=run_id,
        family=result.family,
        model_class=model_class,
        hyperparameters=result.hyperparameters,
        fitted_params=jsonable(result.params),
        metrics=jsonable(result.metrics),
        window_start=result.window_start,
        window_end=result.window_end,
        n_observations=result.n_obs,
        artifact_uri=artifact_uri,
        sha256=saved.sha256,
        size_bytes=saved.size_bytes,
        candidate=candidate,
        candidate_key=candidate_key,
        window_hash=window_hash,
        window_hours=result.window_hours,
        backtest=backtest,
        calibration=jsonable(calibration),
        decision=decision,
    )


async def record_version(conn: asyncpg.Connection, **fields: Any) -> int:
    """Insert a version (the fields of :class:`NewVersion`); returns its id."""
    version = NewVersion(**fields)
    return (await record_versions(conn, [version]))[version.symbol]


async def record_versions(
    conn: asyncpg.Connection, versions: Sequence[NewVersion]
) -> dict[str, int]:
    """Insert versions (at most one per symbol) in one statement; their ids by symbol."""
    columns: list[list[Any]] = [[] for _ in range(21)]
    for v in versions:
        row = (
            v.symbol,
            v.version,
            v.run_id,
            v.family,
            v.model_class,
            json.dumps(v.hyperparameters),
            json.dumps(v.fitted_params),
            json.dumps(v.metrics),
            v.window_start,
            v.window_end,
            v.n_observations,
            v.artifact_uri,
            v.sha256,
            v.size_bytes,
            v.candidate,
            v.candidate_key,
            v.window_hash,
            v.window_hours,
            v.backtest if isinstance(v.backtest, str) else json.dumps(dict(v.backtest or {})),
            json.dumps(dict(v.calibration or {})),
            v.decision,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    rows = await conn.fetch(
        """
        INSERT INTO ml.model_versions
            (symbol, version, run_id, family, model_class, hyperparameters, fitted_params,
             metrics, window_start, window_end, n_observations, artifact_uri, sha256,
             size_bytes, candidate, candidate_key, window_hash, window_hours, backtest,
             calibration, decision)
        SELECT symbol, version, run_id, family, model_class, hyperparameters::jsonb,
               fitted_params::jsonb, metrics::jsonb, window_start, window_end, n_observations,
               artifact_uri, sha256, size_bytes, candidate, candidate_key, window_hash,
               window_hours, backtest::jsonb, calibration::jsonb, decision
        FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                    $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[], $11::int[],
                    $12::text[], $13::text[], $14::bigint[], $15::text[], $16::text[],
                    $17::text[], $18::int[], $19::text[], $20::text[], $21::text[])
            AS v (symbol, version, run_id, family, model_class, hyperparameters,
                  fitted_params, metrics, window_start, window_end, n_observations,
                  artifact_uri, sha256, size_bytes, candidate, candidate_key, window_hash,
                  window_hours, backtest, calibration, decision)
        RETURNING symbol, id
        """,
        *columns,
    )
    return {r["symbol"]: int(r["id"]) for r in rows}


async def find_fit(
    conn: asyncpg.Connection, symbol: str, candidate_key: str, window_hash: str
) -> VersionInfo | None:
    """The live version of this configuration on this window, if one was made."""
    return (await find_fits(conn, {symbol: window_hash})).get(symbol, {}).get(candidate_key)


async def find_fits(
    conn: asyncpg.Connection, windows: Mapping[str, str]
) -> dict[str, dict[str, VersionInfo]]:
    """The live versions fitted on each symbol's window (``windows``: symbol -> window
    hash), by symbol and configuration (candidate key)."""
    rows = await conn.fetch(
        _SELECT + " JOIN unnest($1::text[], $2::text[]) AS w (symbol, window_hash)"
        " ON v.symbol = w.symbol AND v.window_hash = w.window_hash"
        " WHERE v.deleted_at IS NULL AND v.candidate_key IS NOT NULL",
        list(windows),
        list(windows.values()),
    )
    found: dict[str, dict[str, VersionInfo]] = {}
    for row in rows:
        info = _info(row)
        assert info.candidate_key is not None
        found.setdefault(info.symbol, {})[info.candidate_key] = info
    return found


async def pin(conn: asyncpg.Connection, symbol: str) -> Pin | None:
    """Who pinned ``symbol``'s production pointer, if anyone."""
    return (await pins(conn, [symbol])).get(symbol)


async def pins(conn: asyncpg.Connection, symbols: Sequence[str]) -> dict[str, Pin]:
    """The pinned pointers among ``symbols``, by symbol."""
    rows = await conn.fetch(
        """
        SELECT p.symbol, v.version, p.pinned_at, p.pinned_by, p.pin_reason
        FROM ml.production_models AS p JOIN ml.model_versions AS v ON v.id = p.model_version_id
        WHERE p.symbol = ANY($1::text[]) AND p.pinned_at IS NOT NULL
        """,
        list(symbols),
    )
    return {
        r["symbol"]: Pin(r["symbol"], r["version"], r["pinned_at"], r["pinned_by"], r["pin_reason"])
        for r in rows
    }


async def move_pointer(
    conn: asyncpg.Connection,
    symbol: str,
    version_id: int,
    *,
    action: str,
    by: str,
    note: str | None = None,
    pinned: bool = False,
    respect_pin: bool = False,
) -> PointerMove | None:
    """Point ``symbol``'s production at ``version_id`` and record the move; ``pinned`` pins
    it there. With ``respect_pin`` (the trainer) a pinned pointer is left alone: ``None``."""
    moves = await move_pointers(
        conn,
        {symbol: (version_id, note)},
        action=action,
        by=by,
        pinned=pinned,
        respect_pin=respect_pin,
    )
    return moves[0] if moves else None


async def move_pointers(
    conn: asyncpg.Connection,
    targets: Mapping[str, tuple[int, str | None]],
    *,
    action: str,
    by: str,
    pinned: bool = False,
    respect_pin: bool = False,
) -> list[PointerMove]:
    """:func:`move_pointer` for many symbols in one transaction (``targets``: symbol ->
    (version id, note)): the moves made, by symbol; with ``respect_pin`` pinned pointers
    are left alone (no move)."""
    async with conn.transaction():
        symbols = sorted(targets)
        current = {
            r["symbol"]: r
            for r in await conn.fetch(
                """
                SELECT p.symbol, p.model_version_id, v.version, p.pinned_at
                FROM ml.production_models AS p
                JOIN ml.model_versions AS v ON v.id = p.model_version_id
                WHERE p.symbol = ANY($1::text[])
                ORDER BY p.symbol
                FOR UPDATE OF p
                """,
                symbols,
            )
        }
        if respect_pin:
            symbols = [s for s in symbols if s not in current or current[s]["pinned_at"] is None]
        if not symbols:
            return []
        ids = [targets[s][0] for s in symbols]
        notes = [targets[s][1] for s in symbols]
        found = {
            r["id"]: r
            for r in await conn.fetch(
                "SELECT id, symbol, version FROM ml.model_versions WHERE id = ANY($1::bigint[])",
                ids,
            )
        }
        for symbol, version_id in zip(symbols, ids, strict=True):
            row = found.get(version_id)
            if row is None or row["symbol"] != symbol:
                raise RollbackRefused(f"version id {version_id} is not a version of {symbol}")
        changed = {
            r["symbol"]: r["updated_at"]
            for r in await conn.fetch(
                """
                INSERT INTO ml.production_models
                    (symbol, model_version_id, updated_at, updated_by, pinned_at, pinned_by,
                     pin_reason)
                SELECT t.symbol, t.version_id, now(), $3::text,
                       CASE WHEN $4 THEN now() END, CASE WHEN $4 THEN $3::text END,
                       CASE WHEN $4 THEN t.note END
                FROM unnest($1::text[], $2::bigint[], $5::text[]) AS t (symbol, version_id, note)
                ON CONFLICT (symbol) DO UPDATE
                    SET model_version_id = EXCLUDED.model_version_id,
                        updated_at = EXCLUDED.updated_at,
                        updated_by = EXCLUDED.updated_by,
                        pinned_at = EXCLUDED.pinned_at,
                        pinned_by = EXCLUDED.pinned_by,
                        pin_reason = EXCLUDED.pin_reason
                RETURNING symbol, updated_at
                """,
                symbols,
                ids,
                by,
                pinned,
                notes,
            )
        }
        previous = [current[s]["model_version_id"] if s in current else None for s in symbols]
        await conn.execute(
            """
            INSERT INTO ml.production_history
                (symbol, from_version_id, to_version_id, action, changed_by, changed_at, note,
                 pinned)
            SELECT symbol, from_id, to_id, $4, $5, changed_at, note, $8
            FROM unnest($1::text[], $2::bigint[], $3::bigint[], $6::timestamptz[], $7::text[])
                AS h (symbol, from_id, to_id, changed_at, note)
            """,
            symbols,
            previous,
            ids,
            action,
            by,
            [changed[s] for s in symbols],
            notes,
            pinned,
        )
    return [
        PointerMove(
            symbol=symbol,
            from_version=current[symbol]["version"] if symbol in current else None,
            to_version=int(found[version_id]["version"]),
            action=action,
            changed_by=by,
            changed_at=changed[symbol],
            pinned=pinned,
            reason=note,
        )
        for symbol, version_id, note in zip(symbols, ids, notes, strict=True)
    ]


# Refusals raised by ml.set_production (infra/migrations/0008_roles.sql).
REFUSED_SQLSTATE = "MC409"

_SET_PRODUCTION = """
SELECT from_version, to_version, changed_at, pinned, note
FROM ml.set_production($1, $2, $3, $4, $5)
"""


async def set_production(
    conn: asyncpg.Connection,
    symbol: str,
    version: int | None,
    by: str,
    reason: str | None,
    action: str,
) -> PointerMove:
    """Move the pointer by hand through ``ml.set_production``, the one way the API's database
    role can: ``rollback`` points at ``version`` and pins it, ``unpin`` lifts the pin. The
    function's refusals raise :class:`RollbackRefused`."""
    try:
        row = await conn.fetchrow(_SET_PRODUCTION, symbol, version, by, reason, action)
    except asyncpg.PostgresError as exc:
        if getattr(exc, "sqlstate", None) == REFUSED_SQLSTATE:
            raise RollbackRefused(str(exc)) from exc
        raise
    assert row is not None
    return PointerMove(
        symbol=symbol,
        from_version=row["from_version"],
        to_version=row["to_version"],
        action=action,
        changed_by=by,
        changed_at=row["changed_at"],
        pinned=row["pinned"],
        reason=row["note"],
    )


async def unpin(conn: asyncpg.Connection, symbol: str, by: str, reason: str | None) -> PointerMove:
    """Hand ``symbol``'s pointer back to champion/challenger (recorded in the history)."""
    return await set_production(conn, symbol, None, by, reason, "unpin")


async def history(conn: asyncpg.Connection, symbol: str, limit: int = 100) -> list[dict[str, Any]]:
    """The pointer's moves for ``symbol``, newest first (who, when, why, from -> to)."""
    rows = await conn.fetch(
        """
        SELECT h.symbol, f.version AS from_version, t.version AS to_version, h.action,
               h.changed_by, h.changed_at, h.note, h.pinned
        FROM ml.production_history AS h
        LEFT JOIN ml.model_versions AS f ON f.id = h.from_version_id
        JOIN ml.model_versions AS t ON t.id = h.to_version_id
        WHERE h.symbol = $1
        ORDER BY h.changed_at DESC, h.id DESC
        LIMIT $2
        """,
        symbol,
        limit,
    )
    return [dict(r) for r in rows]


async def retention(
    conn: asyncpg.Connection, s3: S3Client, older_than_s: float
) -> list[tuple[str, int]]:
    """Delete the files of versions that never served production and are older than
    ``older_than_s`` seconds, and mark them deleted. Never touches a version that ever
    served production or is in production (pinned or not). Returns (symbol, version)."""
    rows = await conn.fetch(
        """
        SELECT v.id, v.symbol, v.version, v.artifact_uri
        FROM ml.model_versions AS v
        WHERE v.deleted_at IS NULL
          AND v.created_at < now() - make_interval(secs => $1)
          AND NOT EXISTS (SELECT 1 FROM ml.production_models AS p WHERE p.model_version_id = v.id)
          AND NOT EXISTS (SELECT 1 FROM ml.production_history AS h WHERE h.to_version_id = v.id)
        ORDER BY v.id
        """,
        older_than_s,
    )
    deleted: list[tuple[str, int]] = []
    for row in rows:
        bucket, key = parse_uri(row["artifact_uri"])
        await asyncio.to_thread(s3.delete_object, Bucket=bucket, Key=key)
        await conn.execute(
            "UPDATE ml.model_versions SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL",
            row["id"],
        )
        deleted.append((row["symbol"], row["version"]))
    return deleted


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
    reason: str | None = None,
) -> PointerMove:
    """Move ``symbol``'s production pointer to ``to_version`` (default: the version before
    the current one) after checking that its file loads, and **pin** it there: the trainer
    never moves a pinned pointer (``unpin`` hands it back). Refused moves raise
    :class:`RollbackRefused` and leave the pointer where it was."""
    all_versions = [v for v in await versions(conn, symbol) if v.deleted_at is None]
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
    if current is not None and target.id == current.id and (await pin(conn, symbol)):
        raise RollbackRefused(f"{symbol} v{target.version} is already in production, pinned")
    problem = await asyncio.to_thread(verify_version, s3, target, work_dir)
    if problem is not None:
        raise RollbackRefused(f"{symbol} v{target.version}: {problem}")
    return await set_production(conn, symbol, target.version, by, reason, "rollback")

"""PostgreSQL access (asyncpg) and the migration runner."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import asyncpg

from metalcast_core._settings import PostgresSettings

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every process running migrations.
_MIGRATION_LOCK_KEY = 0x6D6574616C  # "metal"


async def create_pool(settings: PostgresSettings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        settings.url, min_size=settings.pool_min_size, max_size=settings.pool_max_size
    )
    assert pool is not None
    return pool


async def connect(settings: PostgresSettings) -> asyncpg.Connection:
    return await asyncpg.connect(settings.url)


def migration_files(directory: Path) -> list[Path]:
    files = sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    if not files:
        raise FileNotFoundError(f"no migrations found in {directory}")
    return files


async def migrate(settings: PostgresSettings, directory: Path) -> list[str]:
    """Apply the migrations in ``directory`` that have not been applied yet, in order.

    Each file runs in its own transaction together with its bookkeeping row, under an
    advisory lock, so concurrent runs and second runs are harmless. A file whose content
    changed after it was applied is an error.
    """
    conn = await connect(settings)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_KEY)
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS public.schema_migrations (
                version    text PRIMARY KEY,
                sha256     text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        done = {
            r["version"]: r["sha256"]
            for r in await conn.fetch("SELECT version, sha256 FROM public.schema_migrations")
        }
        for path in migration_files(directory):
            sql = path.read_text()
            digest = hashlib.sha256(sql.encode()).hexdigest()
            if path.stem in done:
                if done[path.stem] != digest:
                    raise RuntimeError(f"migration {path.name} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO public.schema_migrations (version, sha256) VALUES ($1, $2)",
                    path.stem,
                    digest,
                )
            log.info("applied migration %s", path.name)
            applied.append(path.stem)
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_KEY)
        finally:
            await conn.close()
    return applied


# The LOGIN user of each deployment unit: its name and the group roles (migration 0008) it
# is a member of. Airflow's workers run the backup and the watch tasks, so theirs is both.
LOGIN_USERS: dict[str, tuple[str, ...]] = {
    "sink": ("metalcast_sink",),
    "trainer": ("metalcast_trainer",),
    "api": ("metalcast_api",),
    "backup": ("metalcast_backup",),
    "watch": ("metalcast_watch",),
    # The DAGs' tasks: backups, the watch, and the market_data_bulk pipeline.
    "airflow": ("metalcast_backup", "metalcast_watch", "metalcast_bulk"),
}
# Role attributes are not inherited through membership: the backup's scratch databases
# (`verify`) need CREATEDB on the user that logs in.
_LOGIN_ATTRIBUTES = {"backup": "CREATEDB", "airflow": "CREATEDB"}


# Utility statements take no parameters: the server quotes names (%I) and passwords (%L).
_FORMAT = "SELECT format($1::text, $2::text, $3::text)"


# Utility statements take no parameters: the server quotes names (%I) and passwords (%L).
_FORMAT = "SELECT format($1::text, $2::text, $3::text)"


def login_user_name(unit: str) -> str:
    """``metalcast_<unit>_login``: the user a deployment unit logs in as."""
    return f"metalcast_{unit}_login"


async def ensure_login_users(settings: PostgresSettings, passwords: dict[str, str]) -> list[str]:
    """Create each unit's LOGIN user that has a password in ``passwords`` (unit -> password),
    or set its password if it exists (rotation), and make it a member of its groups. Run as
    the database owner after the migrations; returns the users touched."""
    conn = await connect(settings)
    touched = []
    try:
        for unit, password in sorted(passwords.items()):
            groups = LOGIN_USERS[unit]  # KeyError: not a unit of ours
            user = login_user_name(unit)
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", user)
            verb = "ALTER" if exists else "CREATE"
            attributes = _LOGIN_ATTRIBUTES.get(unit, "")
            statement = f"{verb} ROLE %I LOGIN {attributes} PASSWORD %L"
            await conn.execute(await conn.fetchval(_FORMAT, statement, user, password))
            for group in groups:
                await conn.execute(await conn.fetchval(_FORMAT, "GRANT %I TO %I", group, user))
            log.info("login user %s (%s): %s", user, ", ".join(groups), verb.lower())
            touched.append(user)
    finally:
        await conn.close()
    return touched

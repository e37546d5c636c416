"""PostgreSQL side of a backup: snapshot, row counts, ``pg_dump`` and ``pg_restore``.

The dump and the row counts come from one exported snapshot (``pg_export_snapshot()`` in a
repeatable-read transaction, ``pg_dump --snapshot``), so the manifest's counts are exactly
what the dump holds. Passwords go to the tools through ``PGPASSWORD``, never on a command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import asyncpg

from metalcast_core import PostgresSettings


class PgToolError(RuntimeError):
    """``pg_dump``/``pg_restore`` failed or does not match the server."""


@dataclass(frozen=True)
class PgTarget:
    """A PostgreSQL URL taken apart: the database, and the same server's other databases."""

    url: str

    @property
    def _parts(self) -> SplitResult:
        return urlsplit(self.url)

    @property
    def database(self) -> str:
        return unquote(self._parts.path.lstrip("/")) or "postgres"

    def with_database(self, name: str) -> PgTarget:
        return PgTarget(PostgresSettings(url=self.url).with_database(name).url)

    @property
    def admin(self) -> PgTarget:
        """The ``postgres`` maintenance database of the same server."""
        return self.with_database("postgres")

    def tool_args(self) -> tuple[list[str], dict[str, str]]:
        """``-d URL`` without the password, and the environment carrying it."""
        parts = self._parts
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        netloc = parts.netloc
        if parts.password is not None:
            env["PGPASSWORD"] = unquote(parts.password)
            userinfo, _, hostport = netloc.rpartition("@")
            netloc = f"{userinfo.partition(':')[0]}@{hostport}"
        return ["-d", urlunsplit(parts._replace(netloc=netloc))], env


@dataclass(frozen=True)
class ServerInfo:
    version: str
    version_num: int

    @property
    def major(self) -> int:
        return self.version_num // 10000


async def server_info(conn: asyncpg.Connection) -> ServerInfo:
    version = await conn.fetchval("SHOW server_version")
    num = await conn.fetchval("SHOW server_version_num")
    return ServerInfo(str(version), int(num))


async def tool_version(tool: str) -> tuple[str, int]:
    """(``pg_dump (PostgreSQL) 18.6``, 18)."""
    proc = await asyncio.create_subprocess_exec(
        tool,
        "--version",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    text = out.decode().strip()
    match = re.search(r"\)\s+(\d+)", text)
    if proc.returncode != 0 or match is None:
        raise PgToolError(f"{tool} --version failed: {err.decode().strip() or text}")
    return text, int(match.group(1))


async def check_tool_matches(tool: str, server: ServerInfo) -> str:
    text, major = await tool_version(tool)
    if major != server.major:
        raise PgToolError(
            f"{tool} is version {major} but the server is {server.version}: use the client of "
            f"the same major version (METALCAST_BACKUP__PG_BIN_DIR)"
        )
    return text


_TABLES_SQL = """
SELECT n.nspname AS schema, c.relname AS name
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


async def count_rows(conn: asyncpg.Connection) -> dict[str, int]:
    """``schema.table -> rows`` for every ordinary table, in one statement."""
    tables = [(r["schema"], r["name"]) for r in await conn.fetch(_TABLES_SQL)]
    if not tables:
        return {}
    sql = " UNION ALL ".join(
        f"SELECT {i} AS i, count(*) AS n FROM {_quote(s)}.{_quote(t)}"
        for i, (s, t) in enumerate(tables)
    )
    counts = {int(r["i"]): int(r["n"]) for r in await conn.fetch(sql)}
    return {f"{s}.{t}": counts[i] for i, (s, t) in enumerate(tables)}


@contextlib.asynccontextmanager
async def exported_snapshot(conn: asyncpg.Connection) -> AsyncIterator[str]:
    """A repeatable-read, read-only transaction on ``conn``, its snapshot exported, open
    until the block ends (``pg_dump --snapshot`` needs it open while it starts)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
        yield str(snapshot)


async def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        _, err = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        tail = "\n".join(err.decode(errors="replace").strip().splitlines()[-10:])
        raise PgToolError(f"{what} failed (exit {proc.returncode}): {tail}")


async def pg_dump(
    tool: str, target: PgTarget, out: Path, *, snapshot: str | None, compression_level: int
) -> None:
    """The whole database in custom format into ``out``."""
    db_args, env = target.tool_args()
    argv = [tool, "--format=custom", f"--compress=gzip:{compression_level}", "--no-password"]
    if snapshot is not None:
        argv.append(f"--snapshot={snapshot}")
    await _run([*argv, "--file", str(out), *db_args], env, "pg_dump")


async def pg_restore(tool: str, target: PgTarget, dump: Path, *, jobs: int) -> None:
    """Restore ``dump`` into the existing, empty database ``target``: its objects owned by
    whoever restores, its grants to the services' roles (migration 0008, cluster-wide, so
    present) kept: without them no service could work on a restored database."""
    db_args, env = target.tool_args()
    argv = [
        tool,
        "--no-owner",
        "--exit-on-error",
        "--no-password",
        f"--jobs={jobs}",
        *db_args,
        str(dump),
    ]
    await _run(argv, env, "pg_restore")


async def database_exists(admin: PgTarget, name: str) -> bool:
    conn = await asyncpg.connect(admin.url)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def create_database(admin: PgTarget, name: str) -> None:
    conn = await asyncpg.connect(admin.url)
    try:
        await conn.execute(f"CREATE DATABASE {_quote(name)}")
    finally:
        await conn.close()


async def drop_database(admin: PgTarget, name: str) -> None:
    conn = await asyncpg.connect(admin.url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
    finally:
        await conn.close()


async def count_rows_in(target: PgTarget) -> dict[str, int]:
    conn = await asyncpg.connect(target.url)
    try:
        return await count_rows(conn)
    finally:
        await conn.close()


# SECURITY DEFINER functions and the role that must own them (infra/migrations/0008_roles.sql).
DEFINER_OWNERS = {"ml.set_production(text, integer, text, text, text)": "metalcast_pointer"}


async def restore_definer_owners(target: PgTarget) -> list[str]:
    """Hand each definer function of a restored database back to its role (``--no-owner``
    made the restoring user its owner, so it would run with that user's rights). Returns a
    problem per function the restoring user may not hand over (it is neither a superuser nor
    a member of the role): an operator runs the ``ALTER FUNCTION`` named."""
    problems = []
    conn = await asyncpg.connect(target.url)
    try:
        for function, owner in DEFINER_OWNERS.items():
            exists = await conn.fetchval("SELECT to_regprocedure($1)", function)
            if exists is None:
                continue
            statement = f"ALTER FUNCTION {function} OWNER TO {owner}"
            try:
                await conn.execute(statement)
            except asyncpg.InsufficientPrivilegeError:
                problems.append(f"{function} is not owned by {owner}: run `{statement}`")
    finally:
        await conn.close()
    return problems

"""Least privilege in PostgreSQL (migration 0008): each service's group role can do its job
and nothing else; the API moves the production pointer only through ``ml.set_production``.

Sessions take a role as they connect (``tests.support.as_role``); the backup, whose
scratch databases need CREATEDB, runs as a LOGIN user of its role, as in production."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from metalcast_backup.bootstrap import build_service
from metalcast_core import KafkaSettings, PostgresSettings, S3Settings, make_s3_client
from metalcast_models import registry
from metalcast_sink.bootstrap import run_sink
from metalcast_trainer.bootstrap import train_once
from metalcast_watch import WatchSection, WatchSettings, watch
from tests.integration.test_backup import backup_settings, seed_ticks, seed_training
from tests.integration.test_sink import hourly_ticks
from tests.integration.test_trainer import add_hours, one_more_hour, trainer_settings, walks
from tests.support import (
    FAST_GROUP,
    as_role,
    fetchval,
    login_user,
    publisher,
    s3_identities,
    sink_settings,
)

pytestmark = pytest.mark.integration

SCHEMAS = ("prices", "analytics", "ml", "pipeline", "ops")
SERVICE_ROLES = (
    "metalcast_sink",
    "metalcast_trainer",
    "metalcast_api",
    "metalcast_backup",
    "metalcast_watch",
)
SET_PRODUCTION = "SELECT * FROM ml.set_production('XAU', 1, 'mallory', NULL, 'rollback')"

_RELATIONS_SQL = """
SELECT n.nspname || '.' || c.relname AS name, c.relkind::text AS relkind,
       (SELECT a.attname FROM pg_attribute AS a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attidentity = '' AND a.attgenerated = ''
        ORDER BY a.attnum LIMIT 1) AS first_column,
       ARRAY(SELECT DISTINCT r.rolname FROM aclexplode(coalesce(c.relacl, '{}')) AS x
             JOIN pg_roles AS r ON r.oid = x.grantee) AS grantees
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'v', 'p')
ORDER BY 1
"""


async def relations(pg: PostgresSettings) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg.url)
    try:
        return list(await conn.fetch(_RELATIONS_SQL, list(SCHEMAS)))
    finally:
        await conn.close()


async def refused(conn: asyncpg.Connection, sql: str) -> bool:
    """Whether ``sql`` is refused for lack of a privilege (in a transaction rolled back)."""
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(sql)
    except asyncpg.InsufficientPrivilegeError:
        return True
    finally:
        await tx.rollback()
    return False


def writes(table: str, first_column: str) -> list[str]:
    return [
        f"INSERT INTO {table} DEFAULT VALUES",
        f"UPDATE {table} SET {first_column} = {first_column} WHERE false",
        f"DELETE FROM {table} WHERE false",
        f"TRUNCATE {table}",
    ]


async def test_every_table_and_view_is_granted_to_a_service_role(
    pg_settings: PostgresSettings,
) -> None:
    """The rule in 0008_roles.sql: a migration that adds a table grants it. A table only the
    superuser can read is a table some migration forgot."""
    found = await relations(pg_settings)
    assert len(found) >= 15
    ungranted = [r["name"] for r in found if not set(r["grantees"]) & set(SERVICE_ROLES)]
    assert ungranted == []
    # The read-everything role pg_dump needs is the backup's, and only the backup's.
    conn = await asyncpg.connect(pg_settings.url)
    try:
        readers = await conn.fetch(
            "SELECT r.rolname FROM pg_roles AS r WHERE r.rolname = ANY($1) "
            "AND pg_has_role(r.rolname, 'pg_read_all_data', 'MEMBER')",
            list(SERVICE_ROLES),
        )
        assert [r["rolname"] for r in readers] == ["metalcast_backup"]
        # No role of ours logs in, none is a superuser: login users are made per deployment.
        attributes = await conn.fetch(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'metalcast\\_%' "
            "AND (rolcanlogin OR rolsuper OR rolcreaterole OR rolcreatedb) "
            "AND rolname = ANY($1)",
            [*SERVICE_ROLES, "metalcast_pointer"],
        )
        assert attributes == []
    finally:
        await conn.close()


async def test_the_api_role_reads_and_writes_no_table(pg_settings: PostgresSettings) -> None:
    found = await relations(pg_settings)
    served = ["prices.ticks", "analytics.metal_prices", "ml.production_models", "ml.backtests"]
    conn = await asyncpg.connect(as_role(pg_settings, "metalcast_api").url)
    try:
        assert await conn.fetchval("SELECT current_user") == "metalcast_api"
        for table in [*served, "ml.metal_prices_training", "ops.backups_overview"]:
            assert await conn.fetch(f"SELECT * FROM {table} LIMIT 1") == []
        allowed = []
        for r in found:
            if r["relkind"] == "v":
                continue
            for sql in writes(r["name"], r["first_column"]):
                if not await refused(conn, sql):
                    allowed.append(sql)
        assert allowed == []
        # Nor can it create anything, or read what it does not serve.
        assert await refused(conn, "CREATE TABLE ml.mine (x int)")
        assert await refused(conn, "SELECT * FROM pipeline.consumer_positions")
        assert await refused(conn, "SELECT * FROM ops.watch_state")
    finally:
        await conn.close()


async def test_the_sink_cannot_touch_ml_and_the_trainer_cannot_write_ticks(
    pg_settings: PostgresSettings,
) -> None:
    found = await relations(pg_settings)
    ml_tables = [r for r in found if r["name"].startswith("ml.") and r["relkind"] == "r"]
    assert len(ml_tables) == 9  # 0002, 0004 and 0013 (valuation_fits, valuation_points)
    sink = await asyncpg.connect(as_role(pg_settings, "metalcast_sink").url)
    try:
        for r in ml_tables:
            assert await refused(sink, f"SELECT * FROM {r['name']}"), r["name"]
            for sql in writes(r["name"], r["first_column"]):
                assert await refused(sink, sql), sql
        assert await refused(sink, SET_PRODUCTION)
        assert await refused(sink, "SELECT * FROM ops.backups")
    finally:
        await sink.close()
    trainer = await asyncpg.connect(as_role(pg_settings, "metalcast_trainer").url)
    try:
        for table, column in (("prices.ticks", "price"), ("analytics.metal_prices", "xau")):
            for sql in writes(table, column):
                assert await refused(trainer, sql), sql
        assert await refused(trainer, "SELECT * FROM pipeline.batches")
        # Retention marks versions deleted; nothing of the trainer's deletes rows.
        assert await refused(trainer, "DELETE FROM ml.model_versions WHERE false")
    finally:
        await trainer.close()
    for role in ("metalcast_watch", "metalcast_backup"):
        conn = await asyncpg.connect(as_role(pg_settings, role).url)
        try:
            assert await refused(conn, SET_PRODUCTION), role
            assert await refused(conn, "DELETE FROM prices.ticks WHERE false"), role
        finally:
            await conn.close()


async def test_the_api_moves_the_pointer_only_through_set_production(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    await add_hours(pg_settings, walks(30, 5), datetime(2026, 3, 2, tzinfo=UTC))
    async with s3_identities(s3_settings) as identities:
        # The trainer's real work under its role and S3 identity: v1, then v2 in production.
        settings = trainer_settings(
            as_role(pg_settings, "metalcast_trainer"),
            kafka_settings,
            identities["trainer"],
            tmp_path,
            candidates=["naive"],
        )
        assert (await train_once(settings)).promoted["XAU"] == 1
        await one_more_hour(pg_settings, 6)
        assert (await train_once(settings)).promoted["XAU"] == 2
        # The API checks the model file with its read-only key before the rollback.
        await _api_rollback_and_unpin(pg_settings, identities["api"], tmp_path)
        # The trainer, under its role, sees the pointer unpinned and decides again.
        await one_more_hour(pg_settings, 7)
        report = await train_once(settings)
    assert "XAU" in report.promoted


async def _api_rollback_and_unpin(
    pg_settings: PostgresSettings, api_s3: S3Settings, tmp_path: Path
) -> None:
    s3 = make_s3_client(api_s3)
    api = await asyncpg.connect(as_role(pg_settings, "metalcast_api").url)
    try:
        v1 = await api.fetchval("SELECT id FROM ml.model_versions WHERE symbol = 'XAU' LIMIT 1")
        assert await refused(
            api, f"UPDATE ml.production_models SET model_version_id = {v1} WHERE symbol = 'XAU'"
        )
        assert await refused(
            api,
            "INSERT INTO ml.production_history (symbol, to_version_id, action, changed_by) "
            f"VALUES ('XAU', {v1}, 'rollback', 'mallory')",
        )
        # The API's own code path (the rollback and unpin views call these).
        move = await registry.rollback(api, s3, "XAU", None, "alice", tmp_path, reason="bad v2")
        assert (move.from_version, move.to_version, move.pinned) == (2, 1, True)
        with pytest.raises(registry.RollbackRefused, match="already in production, pinned"):
            await registry.rollback(api, s3, "XAU", 1, "alice", tmp_path)
        with pytest.raises(registry.RollbackRefused, match="has no version 9"):
            await registry.set_production(api, "XAU", 9, "alice", None, "rollback")
        with pytest.raises(registry.RollbackRefused, match="unknown action"):
            await registry.set_production(api, "XAU", 1, "alice", None, "promote")
        unpinned = await registry.unpin(api, "XAU", "bob", None)
        assert (unpinned.action, unpinned.to_version, unpinned.pinned) == ("unpin", 1, False)
        history = await registry.history(api, "XAU")
        assert [(h["action"], h["changed_by"], h["to_version"]) for h in history[:2]] == [
            ("unpin", "bob", 1),
            ("rollback", "alice", 1),
        ]
        assert history[1]["note"] == "bad v2"
        # A definer's function: owned by the pointer role, its search_path fixed.
        fn = await api.fetchrow(
            "SELECT pg_get_userbyid(proowner) AS owner, prosecdef, proconfig FROM pg_proc "
            "WHERE oid = 'ml.set_production(text, integer, text, text, text)'::regprocedure"
        )
        assert fn is not None
        assert (fn["owner"], fn["prosecdef"]) == ("metalcast_pointer", True)
        assert fn["proconfig"] == ["search_path=pg_catalog, pg_temp"]
    finally:
        await api.close()


async def test_the_sink_and_the_watch_do_their_jobs_under_their_roles(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    settings = sink_settings(as_role(pg_settings, "metalcast_sink"), kafka_settings)
    async with publisher(kafka_settings, settings.known_symbols) as pub:
        await pub.publish(hourly_ticks(6))
    stats = await run_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
    assert stats.rows_inserted == 24
    assert await fetchval(pg_settings, "SELECT count(*) FROM analytics.metal_prices") == 6
    assert await fetchval(pg_settings, "SELECT count(*) FROM pipeline.consumer_positions") > 0
    assert await fetchval(pg_settings, "SELECT count(*) FROM pipeline.batches") >= 1

    await seed_ticks(pg_settings, 400)  # fresh ticks of every metal
    watch_settings = WatchSettings(
        postgres=as_role(pg_settings, "metalcast_watch"),
        kafka=kafka_settings,
        watch=WatchSection(sink_group=settings.sink.group_id, trainer_group="none-yet"),
    )
    problems = await watch(watch_settings, raise_on_problems=False)
    assert not [p for p in problems if "permission denied" in p]
    assert await fetchval(pg_settings, "SELECT count(*) FROM ops.watch_runs") == 1


async def test_a_backup_runs_and_verifies_as_a_login_user_of_the_backup_role(
    pg_settings: PostgresSettings, s3_settings: S3Settings
) -> None:
    await seed_ticks(pg_settings, 500)
    await seed_training(pg_settings, s3_settings, make_s3_client(s3_settings))
    async with (
        login_user(pg_settings, "metalcast_backup", "CREATEDB") as backup_pg,
        s3_identities(s3_settings) as identities,
    ):
        conn = await asyncpg.connect(backup_pg.url)
        try:
            assert await refused(conn, "DELETE FROM prices.ticks WHERE false")
        finally:
            await conn.close()
        settings = backup_settings(backup_pg, identities["backup"])
        service = build_service(settings, client=make_s3_client(settings.s3))
        manifest, verification, _ = await service.run_verify_prune()
    assert len(manifest.models) == 8
    assert manifest.status == "complete"
    assert manifest.tables["prices.ticks"] == 500
    assert verification.status == "passed"
    assert await fetchval(pg_settings, "SELECT count(*) FROM ops.backup_verifications") == 1


async def test_the_migrate_job_creates_and_rotates_the_login_users(
    pg_settings: PostgresSettings,
) -> None:
    from pydantic import SecretStr

    from metalcast_core.config import LoginsSection, MigrateSettings
    from metalcast_core.migrate_cli import run

    settings = MigrateSettings(
        postgres=pg_settings,
        logins=LoginsSection(
            api_password=SecretStr("first-api-password"),
            airflow_password=SecretStr("first-airflow-password"),
        ),
    )
    users = ["metalcast_airflow_login", "metalcast_api_login"]
    admin = await asyncpg.connect(pg_settings.url)
    try:
        applied, touched = await run(settings)
        assert (applied, touched) == ([], users)  # the template was migrated already
        first = await admin.fetchval(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'metalcast_api_login'"
        )
        rotated = settings.model_copy(
            update={"logins": LoginsSection(api_password=SecretStr("second-api-password"))}
        )
        assert (await run(rotated))[1] == ["metalcast_api_login"]
        second = await admin.fetchval(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'metalcast_api_login'"
        )
        assert first is not None
        assert second is not None
        assert first != second
        memberships = await admin.fetch(
            "SELECT u.rolname AS member, g.rolname AS grp, u.rolcreatedb "
            "FROM pg_auth_members AS m JOIN pg_roles AS u ON u.oid = m.member "
            "JOIN pg_roles AS g ON g.oid = m.roleid WHERE u.rolname = ANY($1) ORDER BY 1, 2",
            users,
        )
        assert [(r["member"], r["grp"], r["rolcreatedb"]) for r in memberships] == [
            ("metalcast_airflow_login", "metalcast_backup", True),
            ("metalcast_airflow_login", "metalcast_bulk", True),
            ("metalcast_airflow_login", "metalcast_watch", True),
            ("metalcast_api_login", "metalcast_api", False),
        ]
        api_login = pg_settings.model_copy(
            update={"url": pg_settings.url.replace("://postgres@", "://metalcast_api_login@")}
        )
        conn = await asyncpg.connect(api_login.url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM ml.production_models") == 0
            assert await refused(conn, "DELETE FROM ml.production_models WHERE false")
        finally:
            await conn.close()
    finally:
        for user in users:
            await admin.execute(f'DROP ROLE IF EXISTS "{user}"')
        await admin.close()


async def test_a_restored_database_keeps_every_role_and_the_pointer_function(
    pg_settings: PostgresSettings, s3_settings: S3Settings
) -> None:
    from metalcast_backup.dump import PgTarget, drop_database

    await seed_ticks(pg_settings, 100)
    await seed_training(pg_settings, s3_settings, make_s3_client(s3_settings))
    service = build_service(backup_settings(pg_settings, s3_settings))
    manifest = await service.run()
    into = f"restore_{pg_settings.url.rpartition('/')[2][-8:]}"
    try:
        report = await service.restore(manifest.backup_id, into)
        assert report.problems == []
        restored = pg_settings.with_database(into)
        assert [r["name"] for r in await relations(restored)] == [
            r["name"] for r in await relations(pg_settings)
        ]
        ungranted = [
            r["name"]
            for r in await relations(restored)
            if not set(r["grantees"]) & set(SERVICE_ROLES)
        ]
        assert ungranted == []
        api = await asyncpg.connect(as_role(restored, "metalcast_api").url)
        try:
            assert await api.fetchval("SELECT count(*) FROM prices.ticks") == 100
            assert await refused(api, "DELETE FROM ml.production_models WHERE false")
            owner = await api.fetchval(
                "SELECT pg_get_userbyid(proowner) FROM pg_proc "
                "WHERE oid = 'ml.set_production(text, integer, text, text, text)'::regprocedure"
            )
            assert owner == "metalcast_pointer"
            move = await registry.set_production(api, "XAU", 1, "alice", None, "rollback")
            assert (move.to_version, move.pinned) == (1, True)
        finally:
            await api.close()
    finally:
        await drop_database(PgTarget(pg_settings.url).admin, into)

"""``metalcast-migrate``: apply infra/migrations, then create or update the services' LOGIN
users whose passwords are set (compose's migrate job runs this as the database owner).

e.g. ``METALCAST_LOGINS__API_PASSWORD`` makes ``metalcast_api_login``, member of
``metalcast_api``; a changed value changes the password (docs/operations.md, rotation)."""

from __future__ import annotations

import asyncio

from metalcast_core._db import ensure_login_users, migrate
from metalcast_core._logging import configure_logging
from metalcast_core.config import MigrateSettings


async def run(settings: MigrateSettings) -> tuple[list[str], list[str]]:
    applied = await migrate(settings.postgres, settings.migrations_dir)
    users = await ensure_login_users(settings.postgres, settings.logins.passwords())
    return applied, users


def main() -> None:
    settings = MigrateSettings()
    configure_logging(settings.log_level)
    applied, users = asyncio.run(run(settings))
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    if users:
        print(f"login users created or updated: {', '.join(users)}")


if __name__ == "__main__":
    main()

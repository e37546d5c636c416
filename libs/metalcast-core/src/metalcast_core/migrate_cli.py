"""``metalcast-migrate``: apply infra/migrations, then create or update the services' LOGIN
users whose passwords are set (compose's migrate job runs this as the database owner).

e.g. ``METALCAST_LOGINS__API_PASSWORD`` makes ``metalcast_api_login``, member of
``metalcast_api``; a changed value changes the password (docs/operations.md, rotation)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, SecretStr

from metalcast_core._db import ensure_login_users, migrate
from metalcast_core._logging import configure_logging
from metalcast_core._settings import ServiceSettings


class LoginsSection(BaseModel):
    """One password per deployment unit; unset: that user is left alone."""

    sink_password: SecretStr | None = None
    trainer_password: SecretStr | None = None
    api_password: SecretStr | None = None
    backup_password: SecretStr | None = None
    watch_password: SecretStr | None = None
    airflow_password: SecretStr | None = None

    def passwords(self) -> dict[str, str]:
        return {
            name.removesuffix("_password"): value.get_secret_value()
            for name, value in self
            if isinstance(value, SecretStr)
        }


class MigrateSettings(ServiceSettings):
    logins: LoginsSection = LoginsSection()


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

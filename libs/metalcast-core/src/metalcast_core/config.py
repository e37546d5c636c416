"""The migrate job's one settings object: the shared sections plus ``logins``.

e.g. ``METALCAST_LOGINS__API_PASSWORD`` (``metalcast-migrate`` creates or updates
``metalcast_api_login`` with it)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, SecretStr

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
    # The job connects as the database owner; it needs no S3 or Kafka.
    connects_to: ClassVar[frozenset[str]] = frozenset({"postgres"})

    logins: LoginsSection = LoginsSection()

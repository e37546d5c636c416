"""Settings sections shared by every service.

Each service owns exactly one settings object (a subclass of :class:`ServiceSettings`),
built once in its composition root. Nothing else reads ``os.environ``.

Environment names are ``METALCAST_<SECTION>__<FIELD>``, e.g. ``METALCAST_POSTGRES__URL``,
``METALCAST_KAFKA__BOOTSTRAP_SERVERS``, ``METALCAST_S3__ENDPOINT_URL``. ``metalcast stack env``
prints these names for the local stack; compose.yaml uses the same ones.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from metalcast_core._symbols import DEFAULT_KNOWN_SYMBOLS
from metalcast_core._topics import Topic

PLACEHOLDER_SECRETS = frozenset({"changethis", "changeme", "minioadmin", "password", "secret", ""})
# The local stack's own credentials (src/metalcast/stack: the root key's and every service's
# S3 identity's start so): fine on 127.0.0.1, never in production.
LOCAL_STACK_SECRET_PREFIX = "metalcast-local-"


def is_placeholder(value: str, default: str | None = None) -> bool:
    """Whether a secret is empty, a well-known placeholder, the local stack's, or its default."""
    text = value.strip()
    return (
        text.lower() in PLACEHOLDER_SECRETS
        or text.startswith(LOCAL_STACK_SECRET_PREFIX)
        or (default is not None and text == default)
    )


def placeholder_secrets(
    model: BaseModel, prefix: str = "METALCAST_", skip: frozenset[str] = frozenset()
) -> list[str]:
    """The environment names of ``model``'s secrets that are placeholders: every ``SecretStr``
    field of every section but ``skip`` (left at its default counts: defaults are the local
    stack's), and the password in ``METALCAST_POSTGRES__URL`` (none at all counts too)."""
    found = []
    for name, field in type(model).model_fields.items():
        if name in skip:
            continue
        value, env = getattr(model, name), f"{prefix}{name.upper()}"
        if isinstance(value, BaseModel):
            found += placeholder_secrets(value, f"{env}__")
        elif isinstance(value, SecretStr):
            default = (
                field.default.get_secret_value() if isinstance(field.default, SecretStr) else None
            )
            if is_placeholder(value.get_secret_value(), default):
                found.append(env)
    if isinstance(model, PostgresSettings) and is_placeholder(urlsplit(model.url).password or ""):
        found.append(f"{prefix}URL")
    return found


class PostgresSettings(BaseModel):
    url: str = "postgresql://postgres@127.0.0.1:25432/metalcast"
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=5, ge=1)

    def with_database(self, name: str) -> PostgresSettings:
        """The same server and options, another database."""
        parts = urlsplit(self.url)
        return self.model_copy(update={"url": urlunsplit(parts._replace(path=f"/{name}"))})


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:29092"
    client_id: str = "metalcast"
    ticks_partitions: int = Field(default=6, ge=1)
    # Prepended to every topic name; empty in production. Tests use a unique prefix each.
    topic_prefix: str = ""

    def topic_name(self, topic: Topic[Any]) -> str:
        return f"{self.topic_prefix}{topic.name}"


class S3Settings(BaseModel):
    endpoint_url: str | None = "http://127.0.0.1:29000"
    access_key_id: SecretStr = SecretStr("metalcast")
    secret_access_key: SecretStr = SecretStr("metalcast-local-secret")
    region: str = "us-east-1"
    models_bucket: str = "metalcast-models"
    backups_bucket: str = "metalcast-backups"


def _default_migrations_dir() -> Path:
    here = Path.cwd() / "infra" / "migrations"
    if here.is_dir():
        return here
    # Fall back to the repository this library was installed from (editable install).
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "infra" / "migrations"
        if candidate.is_dir():
            return candidate
    return here


def _env_name(section: str, field: str) -> str:
    return f"METALCAST_{section.upper()}__{field.upper()}"


class ServiceSettings(BaseSettings):
    """Base of every service's settings: the sections all services share."""

    model_config = SettingsConfigDict(
        env_prefix="METALCAST_",
        env_nested_delimiter="__",
        extra="ignore",
        hide_input_in_errors=True,  # a mistyped secret's value must not reach the logs
    )

    # The infrastructure sections this service connects to: only their secrets must be real in
    # production (the ingestor never opens PostgreSQL or S3, so compose gives it no key).
    connects_to: ClassVar[frozenset[str]] = frozenset({"postgres", "kafka", "s3"})

    environment: Literal["local", "test", "production"] = "local"
    log_level: str = "INFO"
    postgres: PostgresSettings = PostgresSettings()
    kafka: KafkaSettings = KafkaSettings()
    s3: S3Settings = S3Settings()
    known_symbols: list[str] = Field(default_factory=lambda: list(DEFAULT_KNOWN_SYMBOLS))
    migrations_dir: Path = Field(default_factory=_default_migrations_dir)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_section_settings(cls, data: Any) -> Any:
        """``METALCAST_POSTGRES__URLL`` is a mistake, not something to ignore: a name under
        one of this service's sections that the section does not have stops the service,
        naming the closest known one. (Other services' sections are not this one's to judge.)"""
        if not isinstance(data, dict):
            return data
        problems = []
        for name, field in cls.model_fields.items():
            given, section = data.get(name), field.annotation
            if not isinstance(given, dict) or not (
                isinstance(section, type) and issubclass(section, BaseModel)
            ):
                continue
            known = sorted(section.model_fields)
            for key in given:
                if key in section.model_fields:
                    continue
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = (
                    f"did you mean {_env_name(name, close[0])}?"
                    if close
                    else f"known: {', '.join(_env_name(name, k) for k in known)}"
                )
                problems.append(f"unknown setting {_env_name(name, str(key))}: {hint}")
        if problems:
            raise ValueError("; ".join(problems))
        return data

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        """In production, every secret of every section must be real: empty, ``changethis``
        and the like, the local stack's and a secret left at its default stop the service,
        naming each setting (its value is never shown)."""
        if self.environment == "production":
            unused = frozenset({"postgres", "kafka", "s3"}) - self.connects_to
            found = placeholder_secrets(self, skip=unused)
            if found:
                raise ValueError(
                    f"placeholder secrets in production: {', '.join(found)} "
                    "(empty, a placeholder such as changethis, the local stack's, or the "
                    "default; the PostgreSQL URL needs a real password); set real ones"
                )
        return self

"""Settings sections of the shared library."""

import pytest
from pydantic import ValidationError

from metalcast_core import PostgresSettings, ServiceSettings


def test_with_database_keeps_the_server_credentials_and_options() -> None:
    pg = PostgresSettings(
        url="postgresql://user:secret@db.example:5433/metalcast?sslmode=require",
        pool_max_size=9,
    )
    other = pg.with_database("scratch_1")
    assert other.url == "postgresql://user:secret@db.example:5433/scratch_1?sslmode=require"
    assert other.pool_max_size == 9
    assert pg.url.endswith("/metalcast?sslmode=require")  # the original is unchanged


def test_with_database_on_a_url_without_a_database() -> None:
    assert (
        PostgresSettings(url="postgresql://postgres@127.0.0.1:25432").with_database("x").url
        == "postgresql://postgres@127.0.0.1:25432/x"
    )


def test_a_misspelt_setting_stops_the_service_naming_the_closest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from metalcast_sink.config import SinkSettings
    from metalcast_trainer.config import TrainerSettings

    monkeypatch.setenv("METALCAST_POSTGRES__URLL", "postgresql://db/x")
    monkeypatch.setenv("METALCAST_S3__SECRET_ACCES_KEY", "not-to-be-logged")
    with pytest.raises(ValidationError) as refused:
        SinkSettings()
    message = str(refused.value)
    assert "unknown setting METALCAST_POSTGRES__URLL: did you mean METALCAST_POSTGRES__URL?" in (
        message
    )
    assert "METALCAST_S3__SECRET_ACCES_KEY: did you mean METALCAST_S3__SECRET_ACCESS_KEY?" in (
        message
    )
    assert "not-to-be-logged" not in message
    monkeypatch.delenv("METALCAST_POSTGRES__URLL")
    monkeypatch.delenv("METALCAST_S3__SECRET_ACCES_KEY")
    # Another service's section is not this one's to judge.
    monkeypatch.setenv("METALCAST_TRAINER__COALESCE_S", "0.5")
    assert SinkSettings().sink.group_id == "metalcast-sink"
    assert TrainerSettings().trainer.coalesce_s == 0.5


REAL_ENV = {
    "METALCAST_ENVIRONMENT": "production",
    "METALCAST_POSTGRES__URL": "postgresql://metalcast_sink_login:s3cr3t-pg-pass@db:5432/metalcast",
    "METALCAST_S3__ACCESS_KEY_ID": "metalcast-sink",
    "METALCAST_S3__SECRET_ACCESS_KEY": "a-real-secret-for-s3",
    "METALCAST_API__API_KEY": "a-real-api-key-of-24-chars",
}


def _service_settings() -> list[type[ServiceSettings]]:
    from metalcast_api.config import ApiSettings
    from metalcast_backup.config import BackupSettings
    from metalcast_ingestor.config import IngestorSettings
    from metalcast_sink.config import SinkSettings
    from metalcast_trainer.config import TrainerSettings
    from metalcast_watch.config import WatchSettings

    return [
        ApiSettings,
        BackupSettings,
        IngestorSettings,
        SinkSettings,
        TrainerSettings,
        WatchSettings,
    ]


@pytest.mark.parametrize("settings_class", _service_settings())
def test_production_refuses_the_local_defaults_naming_every_secret(
    settings_class: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METALCAST_ENVIRONMENT", "production")
    if settings_class.__name__ == "IngestorSettings":
        # It connects to Kafka only (no secret there): its unused defaults are not checked.
        assert settings_class().environment == "production"
        monkeypatch.setenv("METALCAST_INGEST__GOLD_API_KEY", "changethis")
    with pytest.raises(ValidationError) as refused:
        settings_class()
    message = str(refused.value)
    expected = {
        "postgres": ["METALCAST_POSTGRES__URL"],  # no password at all
        # the local stack's `metalcast` / metalcast-local-secret
        "s3": ["METALCAST_S3__ACCESS_KEY_ID", "METALCAST_S3__SECRET_ACCESS_KEY"],
        "kafka": [],
    }
    for section in ("postgres", "s3"):
        for name in expected[section]:
            assert (name in message) == (section in settings_class.connects_to), name
    assert "metalcast-local-secret" not in message  # names, never values
    # Locally the same defaults are the local stack's and fine.
    monkeypatch.setenv("METALCAST_ENVIRONMENT", "local")
    assert settings_class().environment == "local"


@pytest.mark.parametrize("settings_class", _service_settings())
def test_production_starts_with_real_secrets(
    settings_class: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in REAL_ENV.items():
        monkeypatch.setenv(name, value)
    assert settings_class().environment == "production"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("METALCAST_S3__SECRET_ACCESS_KEY", ""),
        ("METALCAST_S3__SECRET_ACCESS_KEY", " changethis "),
        ("METALCAST_S3__SECRET_ACCESS_KEY", "CHANGEME"),
        ("METALCAST_S3__SECRET_ACCESS_KEY", "minioadmin"),
        ("METALCAST_S3__SECRET_ACCESS_KEY", "metalcast-local-secret"),
        ("METALCAST_S3__SECRET_ACCESS_KEY", "metalcast-local-api-secret"),
        ("METALCAST_S3__ACCESS_KEY_ID", ""),
        ("METALCAST_POSTGRES__URL", "postgresql://metalcast:changethis@db/metalcast"),
        ("METALCAST_POSTGRES__URL", "postgresql://metalcast:@db/metalcast"),
        ("METALCAST_POSTGRES__URL", "postgresql://metalcast@db/metalcast"),
        ("METALCAST_API__API_KEY", "changethis"),
        ("METALCAST_INGEST__GOLD_API_KEY", "changethis"),
        ("METALCAST_INGEST__METALS_API_KEY", ""),
    ],
)
def test_production_refuses_each_placeholder(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metalcast_api.config import ApiSettings
    from metalcast_ingestor.config import IngestorSettings

    for real, real_value in REAL_ENV.items():
        monkeypatch.setenv(real, real_value)
    monkeypatch.setenv(name, value)
    settings_class = IngestorSettings if "INGEST" in name else ApiSettings
    with pytest.raises(ValidationError, match=name):
        settings_class()


def test_an_unset_optional_key_is_no_placeholder(monkeypatch: pytest.MonkeyPatch) -> None:
    from metalcast_ingestor.config import IngestorSettings

    for name, value in REAL_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("METALCAST_INGEST__GOLD_API_KEY", "a-real-provider-key")
    settings = IngestorSettings()
    assert settings.ingest.metals_api_key is None
    assert settings.ingest.gold_api_key is not None

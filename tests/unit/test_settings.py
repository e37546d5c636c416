"""Settings sections of the shared library."""

import pytest
from pydantic import ValidationError

from metalcast_core import PostgresSettings


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

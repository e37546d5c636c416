"""Settings sections of the shared library."""

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
        PostgresSettings(url="postgresql://postgres@127.0.0.1:55432").with_database("x").url
        == "postgresql://postgres@127.0.0.1:55432/x"
    )

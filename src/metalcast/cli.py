"""The ``metalcast`` command: the local stack (``stack``, ``migrate``, ``demo``) and every
service's own front door, mounted.

Each service has one Typer app, ``make_app(settings_factory)`` in its ``cli.py``, that its
console script (``metalcast-ingestor``, ``metalcast-sink``, ...) also runs; this module only
mounts those apps, handing them settings factories (from the environment; the defaults point
at the local stack). A service's ``cli`` module defers its settings, clients and models to the
command that runs them, so mounting it costs ``metalcast --help`` next to nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from metalcast_api.config import ApiSettings
    from metalcast_backup.config import BackupSettings
    from metalcast_bulk.config import BulkSettings
    from metalcast_ingestor.config import IngestorSettings
    from metalcast_sink.config import SinkSettings
    from metalcast_trainer.config import TrainerSettings
    from metalcast_watch.config import WatchSettings

app = typer.Typer(no_args_is_help=True, help="metalcast: precious-metal prices, end to end.")
stack_app = typer.Typer(no_args_is_help=True, help="The local stack of real servers.")
app.add_typer(stack_app, name="stack")


@stack_app.command("up")
def stack_up(
    with_airflow: Annotated[
        bool,
        typer.Option(help="Also Airflow (api-server, scheduler, dag-processor, triggerer)."),
    ] = False,
    with_spark: Annotated[
        bool,
        typer.Option(
            help="Also a Spark standalone master and worker (metalcast bulk --engine spark)."
        ),
    ] = False,
) -> None:
    """Start PostgreSQL, Kafka and S3 on 127.0.0.1 (harmless when already running)."""
    from metalcast import stack

    stack.up(
        with_airflow=with_airflow,
        with_spark=with_spark,
        progress=lambda line: typer.echo(line, err=True),
    )
    _print_status()
    if with_airflow:
        _print_airflow_login()
    if with_spark:
        from metalcast.stack import StackConfig, spark

        typer.echo(f"Spark master: {spark.master_url(StackConfig.from_environ())}")


def _print_airflow_login() -> None:
    from metalcast.stack import StackConfig, airflow

    login = airflow.login(StackConfig.from_environ())
    typer.echo(f"Airflow UI: {login.url}  user {login.username}  password {login.password}")


@stack_app.command("down")
def stack_down(
    purge: Annotated[bool, typer.Option(help="Also delete the servers' data.")] = False,
) -> None:
    """Stop every server of the local stack by its PID."""
    from metalcast import stack

    stack.down(purge=purge)
    typer.echo("stack stopped" + (" and purged" if purge else ""))


@stack_app.command("status")
def stack_status() -> None:
    """Which servers run, where, with which PID."""
    _print_status()


@stack_app.command("env")
def stack_env(
    service: Annotated[
        str | None,
        typer.Option(
            "--service",
            help="Use this service's own S3 identity (trainer, api, backup) instead of the "
            "root key.",
        ),
    ] = None,
) -> None:
    """Print `export NAME=value` lines for every connection setting (eval them)."""
    from metalcast import stack
    from metalcast.stack.s3_identities import identity_env

    variables = stack.env()
    if service is not None:
        try:
            variables |= identity_env(service)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--service") from exc
    for name, value in variables.items():
        typer.echo(f"export {name}={_shell_quote(value)}")


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def _print_status() -> None:
    from metalcast import stack

    for line in stack.status_lines():
        typer.echo(line)


@app.command()
def migrate() -> None:
    """Apply infra/migrations in order; a second run does nothing."""
    from metalcast_core import ServiceSettings, configure_logging
    from metalcast_core import migrate as run_migrations

    settings = ServiceSettings()
    configure_logging(settings.log_level)
    applied = asyncio.run(run_migrations(settings.postgres, settings.migrations_dir))
    typer.echo(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


# --- the ingestor: `metalcast ingest schedule|once|backfill|replay` ----------------------------


def _ingestor_settings() -> IngestorSettings:
    from metalcast_ingestor.config import IngestorSettings

    return IngestorSettings()


def _add_ingestor_app() -> None:
    from metalcast_ingestor.cli import make_app

    app.add_typer(make_app(_ingestor_settings), name="ingest")


_add_ingestor_app()


# --- the sink: `metalcast sink [--until-idle]`, `metalcast instruments ...` ------------------


def _sink_settings() -> SinkSettings:
    from metalcast_sink.config import SinkSettings

    return SinkSettings()


def _add_sink_app() -> None:
    from metalcast_sink.cli import make_app, make_instruments_app

    app.add_typer(make_app(_sink_settings), name="sink")
    app.add_typer(make_instruments_app(_sink_settings), name="instruments")


_add_sink_app()


# --- the trainer: `metalcast train [--once]` and `metalcast models ...` ------------------------


def _trainer_settings() -> TrainerSettings:
    from metalcast_trainer.config import TrainerSettings

    return TrainerSettings()


def _add_trainer_apps() -> None:
    from metalcast_trainer.cli import make_app, make_models_app

    app.add_typer(make_app(_trainer_settings), name="train")
    app.add_typer(make_models_app(_trainer_settings), name="models")


_add_trainer_apps()


@app.command()
def demo(
    hours: Annotated[int, typer.Option(help="Hours of simulated history to backfill.")] = 72,
    with_airflow: Annotated[
        bool, typer.Option(help="Also start Airflow; its UI address and login are printed.")
    ] = False,
    serve: Annotated[
        bool,
        typer.Option(
            help="End by running the system live (sink, trainer, API, a simulated feed) "
            "until Ctrl-C."
        ),
    ] = True,
    live_hours: Annotated[
        int, typer.Option(help="Hours the live feed publishes after the backfill.")
    ] = 24,
    tick_s: Annotated[
        float, typer.Option(help="Seconds between the live feed's hours.", min=0.1)
    ] = 5.0,
) -> None:
    """Stack up → migrate → backfill → sink → train, print every door, then run live:
    sink and trainer as services, a simulated feed, the API and dashboard; Ctrl-C stops."""
    from metalcast.demo import run_demo

    run_demo(
        hours=hours, with_airflow=with_airflow, serve=serve, live_hours=live_hours, tick_s=tick_s
    )


# --- backups: `metalcast backup run|list|verify|restore` --------------------------------------


def _backup_settings() -> BackupSettings:
    """The backup service's settings; on the local stack, its PostgreSQL 18 pg_dump, and its
    second MinIO as the off-box target unless one is configured."""
    from metalcast.stack import StackConfig, postgres_bin_dir
    from metalcast.stack.offsite import OffsiteMinIO, offsite_settings
    from metalcast_backup.config import BackupSettings, OffsiteTarget

    settings = BackupSettings()
    if settings.backup.pg_bin_dir is None:
        settings.backup.pg_bin_dir = Path(postgres_bin_dir())
    config = StackConfig.from_environ()
    if settings.backup.offsite is None and OffsiteMinIO(config).pid() is not None:
        s3 = offsite_settings(config)
        settings.backup.offsite = OffsiteTarget(
            endpoint_url=s3.endpoint_url,
            access_key_id=s3.access_key_id,
            secret_access_key=s3.secret_access_key,
            region=s3.region,
            bucket=s3.backups_bucket,
        )
    return settings


def _add_backup_app() -> None:
    from metalcast_backup.cli import make_app

    app.add_typer(make_app(_backup_settings), name="backup")


_add_backup_app()


# --- the pipeline watch: `metalcast watch` ----------------------------------------------------


def _watch_settings() -> WatchSettings:
    from metalcast_watch.config import WatchSettings

    return WatchSettings()


def _add_watch_app() -> None:
    from metalcast_watch.cli import make_app

    app.add_typer(make_app(_watch_settings), name="watch")


_add_watch_app()


# --- the API and dashboard: `metalcast api` ---------------------------------------------------


def _api_settings() -> ApiSettings:
    from metalcast_api.config import ApiSettings

    return ApiSettings()


def _add_api_app() -> None:
    from metalcast_api.cli import make_app

    app.add_typer(make_app(_api_settings), name="api")


_add_api_app()


# --- bulk market data: `metalcast bulk ingest|publish|features|train|report` ------------------


def _bulk_settings() -> BulkSettings:
    from metalcast_bulk.config import BulkSettings

    return BulkSettings()


def _add_bulk_app() -> None:
    from metalcast_bulk.cli import make_app

    app.add_typer(make_app(_bulk_settings), name="bulk")


_add_bulk_app()

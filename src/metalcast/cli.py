"""The ``metalcast`` command: one entry point for the local stack and every service.

Each subcommand is a thin entry point: it builds the service's settings (from the
environment; the defaults point at the local stack) and hands over to that service's
composition root.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from metalcast_core import run_until_signal

if TYPE_CHECKING:
    from metalcast_backup.config import BackupSettings
    from metalcast_trainer.config import TrainerSettings

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, help="metalcast: precious-metal prices, end to end.")
stack_app = typer.Typer(no_args_is_help=True, help="The local stack of real servers.")
app.add_typer(stack_app, name="stack")


@stack_app.command("up")
def stack_up(
    with_airflow: Annotated[
        bool,
        typer.Option(help="Also Airflow (api-server, scheduler, dag-processor, triggerer)."),
    ] = False,
) -> None:
    """Start PostgreSQL, Kafka and S3 on 127.0.0.1 (harmless when already running)."""
    from metalcast import stack

    stack.up(with_airflow=with_airflow)
    _print_status()
    if with_airflow:
        _print_airflow_login()


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
def stack_env() -> None:
    """Print `export NAME=value` lines for every connection setting (eval them)."""
    from metalcast import stack

    for name, value in stack.env().items():
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


@app.command()
def ingest(
    source: Annotated[
        list[str] | None,
        typer.Option(help="Source name(s); default: METALCAST_INGEST__SOURCES."),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="Backfill from this instant (ISO-8601, UTC).")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Backfill up to (excluded).")] = None,
    days: Annotated[
        float | None, typer.Option(help="Backfill the last N days up to the current hour.")
    ] = None,
    file: Annotated[
        Path | None, typer.Option(help="Replay a CSV/Parquet file (timestamp,symbol,price).")
    ] = None,
    once: Annotated[bool, typer.Option(help="Poll the sources once and exit.")] = False,
    symbols: Annotated[list[str] | None, typer.Option(help="Symbols; default: the metals.")] = None,
) -> None:
    """Run the ingestor: on a schedule (default), once, a backfill, or a file replay."""
    from metalcast_ingestor import bootstrap
    from metalcast_ingestor.config import IngestorSettings

    settings = IngestorSettings()
    bootstrap.configure(settings)
    if symbols:
        settings.ingest.symbols = [s.upper() for s in symbols]
    if file is not None or (source and source[0] == "replay" and file is None):
        if file is None:
            raise typer.BadParameter("--source replay needs --file")
        stats = asyncio.run(bootstrap.replay(settings, file))
    elif start is not None or days is not None:
        try:
            begin, stop_at = bootstrap.backfill_window(days, start, end)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        names = source or ["simulated"]
        stats = asyncio.run(bootstrap.backfill(settings, names[0], begin, stop_at))
    elif once:
        stats = asyncio.run(bootstrap.poll(settings, source))
    else:
        run_until_signal(lambda stop: bootstrap.schedule(settings, source, stop))
        return
    typer.echo(json.dumps(stats, default=str))


@app.command()
def sink(
    until_idle: Annotated[
        bool, typer.Option(help="Stop once every partition is consumed to its end.")
    ] = False,
) -> None:
    """Run the sink: prices.ticks.v1 → PostgreSQL, then pipeline.batch-loaded.v1."""
    from metalcast_core import configure_logging
    from metalcast_sink.bootstrap import run_sink
    from metalcast_sink.config import SinkSettings

    settings = SinkSettings()
    configure_logging(settings.log_level)
    stats = run_until_signal(lambda stop: run_sink(settings, stop=stop, until_idle=until_idle))
    typer.echo(f"sink: {stats}")


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
        bool, typer.Option(help="End by serving the API and dashboard until Ctrl-C.")
    ] = True,
) -> None:
    """Stack up → migrate → backfill → sink → train → serve the dashboard."""
    from metalcast.demo import run_demo

    run_demo(hours=hours, with_airflow=with_airflow, serve=serve)


# --- backups: `metalcast backup run|list|verify|restore|watch` --------------------------------


def _backup_settings() -> BackupSettings:
    """The backup service's settings; on the local stack, its PostgreSQL 18 pg_dump."""
    from metalcast.stack import postgres_bin_dir
    from metalcast_backup.config import BackupSettings

    settings = BackupSettings()
    if settings.backup.pg_bin_dir is None:
        settings.backup.pg_bin_dir = Path(postgres_bin_dir())
    return settings


def _add_backup_app() -> None:
    from metalcast_backup.cli import make_app

    app.add_typer(make_app(_backup_settings), name="backup")


_add_backup_app()


# --- the API and dashboard: `metalcast api` ---------------------------------------------------


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Default: METALCAST_API__HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: METALCAST_API__PORT.")] = None,
) -> None:
    """Serve the HTTP API (/v1, /docs, /metrics) and the dashboard (/) with uvicorn."""
    from metalcast_api.__main__ import serve
    from metalcast_api.config import ApiSettings

    settings = ApiSettings()
    if host is not None:
        settings.api.host = host
    if port is not None:
        settings.api.port = port
    serve(settings)  # prints the address it listens on

"""The ``metalcast`` command: one entry point for the local stack and every service.

Each subcommand is a thin entry point: it builds the service's settings (from the
environment; the defaults point at the local stack) and hands over to that service's
composition root.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import asyncpg
import typer

from metalcast_core import run_until_signal

if TYPE_CHECKING:
    from metalcast_backup.config import BackupSettings

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


@app.command()
def train(
    once: Annotated[bool, typer.Option(help="Train now on the current window and exit.")] = False,
) -> None:
    """Run the trainer: retrain one model per metal on every batch-loaded event."""
    from metalcast_core import configure_logging
    from metalcast_trainer.bootstrap import run_trainer, train_once
    from metalcast_trainer.config import TrainerSettings

    settings = TrainerSettings()
    configure_logging(settings.log_level)
    if once:
        report = asyncio.run(train_once(settings))
        typer.echo(f"run {report.run_id} {report.status}: promoted {report.promoted}")
        for symbol, reason in report.failed.items():
            typer.echo(f"  {symbol} not trained: {reason}")
        raise typer.Exit(0 if report.promoted else 1)
    run_until_signal(lambda stop: run_trainer(settings, stop))


models_app = typer.Typer(no_args_is_help=True, help="Model versions and the production pointer.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list() -> None:
    """The production version of every metal, with its window and error against naive."""
    from metalcast_models import registry

    current = asyncio.run(_with_conn(registry.production))
    if not current:
        typer.echo("no model in production yet: run `metalcast train --once`")
        return
    typer.echo(
        f"{'symbol':<7}{'version':>8}  {'family':<7}{'trained (UTC)':<18}{'rmse':>10}{'naive':>10}"
    )
    for v in current:
        rmse, naive = v.metrics.get("rmse"), v.metrics.get("naive_rmse")
        typer.echo(
            f"{v.symbol:<7}{v.version:>8}  {v.family:<7}{v.created_at:%Y-%m-%d %H:%M} "
            f"{_num(rmse):>10}{_num(naive):>10}"
        )


@models_app.command("show")
def models_show(symbol: str) -> None:
    """Every version of SYMBOL: hyperparameters, fitted parameters, metrics, file."""
    import dataclasses

    from metalcast_models import registry

    found = asyncio.run(_with_conn(lambda conn: registry.versions(conn, symbol.upper())))
    if not found:
        raise typer.BadParameter(f"no model versions of {symbol.upper()}")
    for v in found:
        typer.echo(json.dumps(dataclasses.asdict(v), default=str, indent=2))


@models_app.command("rollback")
def models_rollback(
    symbol: str,
    to: Annotated[int | None, typer.Option(help="Target version (default: the previous).")] = None,
    by: Annotated[str, typer.Option(help="Who moves the pointer (recorded).")] = "cli",
) -> None:
    """Point SYMBOL's production at another version, after checking its file loads."""
    import tempfile

    from metalcast_core import make_s3_client
    from metalcast_models import registry
    from metalcast_trainer.config import TrainerSettings

    settings = TrainerSettings()
    s3 = make_s3_client(settings.s3)
    with tempfile.TemporaryDirectory() as work:
        try:
            move = asyncio.run(
                _with_conn(lambda conn: registry.rollback(conn, s3, symbol.upper(), to, by, work))
            )
        except registry.RollbackRefused as exc:
            typer.secho(f"refused: {exc}", fg="red", err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"{move.symbol}: v{move.from_version} -> v{move.to_version} ({move.action} by {by})")


def _num(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "-"


async def _with_conn(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    from metalcast_core import ServiceSettings, connect

    conn = await connect(ServiceSettings().postgres)
    try:
        return await work(conn)
    finally:
        await conn.close()


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

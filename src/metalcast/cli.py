"""The ``metalcast`` command: one entry point for the local stack and every service.

Each subcommand is a thin entry point: it builds the service's settings (from the
environment; the defaults point at the local stack) and hands over to that service's
composition root.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, help="metalcast: precious-metal prices, end to end.")
stack_app = typer.Typer(no_args_is_help=True, help="The local stack of real servers.")
app.add_typer(stack_app, name="stack")


def _parse_when(value: str) -> datetime:
    from metalcast_ingestor.bootstrap import parse_instant

    try:
        return parse_instant(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@stack_app.command("up")
def stack_up() -> None:
    """Start PostgreSQL, Kafka and S3 on 127.0.0.1 (harmless when already running)."""
    from metalcast import stack

    stack.up()
    _print_status()


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
        if days is not None:
            stop_at = bootstrap.current_hour() + timedelta(hours=1)
            begin = stop_at - timedelta(days=days)
        else:
            assert start is not None
            begin = _parse_when(start)
            stop_at = _parse_when(end) if end else bootstrap.current_hour() + timedelta(hours=1)
        if begin >= stop_at:
            raise typer.BadParameter("--from must be before --to")
        names = source or ["simulated"]
        stats = asyncio.run(bootstrap.backfill(settings, names[0], begin, stop_at))
    elif once:
        stats = asyncio.run(bootstrap.poll(settings, source))
    else:
        asyncio.run(_until_signal(lambda stop: bootstrap.schedule(settings, source, stop)))
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
    stats = asyncio.run(
        _until_signal(lambda stop: run_sink(settings, stop=stop, until_idle=until_idle))
    )
    typer.echo(f"sink: {stats}")


@app.command()
def demo(
    hours: Annotated[int, typer.Option(help="Hours of simulated history to backfill.")] = 72,
) -> None:
    """Stack up → migrate → backfill simulated prices → sink → show what landed."""
    from metalcast.demo import run_demo

    run_demo(hours=hours)


async def _until_signal(run: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await run(stop)

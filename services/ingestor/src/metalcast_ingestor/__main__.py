"""``metalcast-ingestor``: the ingestor's entry point (compose runs ``schedule``)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from metalcast_core import run_until_signal
from metalcast_ingestor import bootstrap
from metalcast_ingestor.config import IngestorSettings

cli = typer.Typer(no_args_is_help=True, help="Fetch prices and publish them to Kafka.")


def _settings() -> IngestorSettings:
    settings = IngestorSettings()
    bootstrap.configure(settings)
    return settings


@cli.command()
def schedule() -> None:
    """Poll the configured sources now and at every interval (top of the hour) until stopped."""
    settings = _settings()
    run_until_signal(lambda stop: bootstrap.schedule(settings, None, stop))


@cli.command()
def once(source: Annotated[list[str] | None, typer.Option()] = None) -> None:
    """Poll once and exit."""
    typer.echo(json.dumps(asyncio.run(bootstrap.poll(_settings(), source)), default=str))


@cli.command()
def backfill(
    source: Annotated[str, typer.Option()] = "simulated",
    days: Annotated[float, typer.Option(help="The last N days up to the current hour.")] = 2.0,
    start: Annotated[str | None, typer.Option("--from", help="ISO-8601 instant (UTC).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="ISO-8601 instant, excluded.")] = None,
) -> None:
    """Publish a range of history from one source."""
    try:
        begin, stop_at = bootstrap.backfill_window(days, start, end)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    stats = asyncio.run(bootstrap.backfill(_settings(), source, begin, stop_at))
    typer.echo(json.dumps(stats, default=str))


@cli.command()
def replay(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Publish every row of a CSV or Parquet file (timestamp,symbol,price)."""
    typer.echo(json.dumps(asyncio.run(bootstrap.replay(_settings(), file)), default=str))


def _when(value: str) -> datetime:
    try:
        return bootstrap.parse_instant(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def main() -> None:
    cli()


if __name__ == "__main__":
    main()

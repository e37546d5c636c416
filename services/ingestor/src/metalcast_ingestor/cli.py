"""The ingestor's front door (``metalcast-ingestor``; ``metalcast ingest`` mounts the same app):
poll on a schedule, poll once, backfill a range, replay a file.

:func:`make_app` takes the settings factory, so the umbrella command and tests hand in their
own. This module decodes the command line (instants, backfill windows) and hands plain values
to :mod:`metalcast_ingestor.bootstrap`; it imports nothing heavy until a command runs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from metalcast_ingestor.config import IngestorSettings

SettingsFactory = Callable[[], "IngestorSettings"]


def parse_instant(value: str) -> datetime:
    """An ISO-8601 date or date-time; naive means UTC. ``typer.BadParameter`` with a reason."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not an ISO-8601 date or date-time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def backfill_window(
    days: float | None, start: datetime | None, end: datetime | None
) -> tuple[datetime, datetime]:
    """``[start, end)`` of a backfill: ``end`` defaults to the end of the current hour,
    ``start`` to ``days`` before ``end``. ``typer.BadParameter`` if it makes no range."""
    if end is None:
        from metalcast_ingestor.bootstrap import current_hour

        end = current_hour() + timedelta(hours=1)
    if start is None:
        if days is None:
            raise typer.BadParameter("a backfill needs --from or --days", param_hint="'--from'")
        if days <= 0:
            raise typer.BadParameter(f"{days:g} is not a positive number", param_hint="'--days'")
        start = end - timedelta(days=days)
    if start >= end:
        raise typer.BadParameter(
            f"{start.isoformat()} is not before --to {end.isoformat()}", param_hint="'--from'"
        )
    return start, end


Sources = Annotated[
    list[str] | None,
    typer.Option(
        "--source", help="Source name; repeat for more. Default: METALCAST_INGEST__SOURCES."
    ),
]
Symbols = Annotated[
    list[str] | None,
    typer.Option("--symbols", "--symbol", help="Symbol; repeat for more. Default: the metals."),
]


def make_app(settings_factory: SettingsFactory) -> typer.Typer:
    app = typer.Typer(
        no_args_is_help=True,
        help="Fetch prices and publish them to prices.ticks.v1: on a schedule, once, a backfill "
        "of a range, or a file replay.",
    )

    def _settings(symbols: list[str] | None = None) -> IngestorSettings:
        from metalcast_ingestor import bootstrap

        settings = settings_factory()
        bootstrap.configure(settings)
        if symbols:
            settings.ingest.symbols = [s.upper() for s in symbols]
        return settings

    def _print(stats: dict[str, Any]) -> None:
        typer.echo(json.dumps(stats, default=str))

    @app.command()
    def schedule(source: Sources = None, symbols: Symbols = None) -> None:
        """Poll the sources now and every METALCAST_INGEST__INTERVAL_S until stopped."""
        from metalcast_core import run_until_signal
        from metalcast_ingestor import bootstrap

        settings = _settings(symbols)
        run_until_signal(lambda stop: bootstrap.schedule(settings, source, stop))

    @app.command()
    def once(source: Sources = None, symbols: Symbols = None) -> None:
        """Poll the sources once, print what was published as JSON, and exit."""
        from metalcast_ingestor import bootstrap

        _print(asyncio.run(bootstrap.poll(_settings(symbols), source)))

    @app.command()
    def backfill(
        source: Annotated[str, typer.Option(help="The one source to backfill from.")] = "simulated",
        days: Annotated[
            float, typer.Option(help="The last N days up to --to (ignored with --from).")
        ] = 2.0,
        start: Annotated[
            datetime | None,
            typer.Option(
                "--from",
                parser=parse_instant,
                metavar="INSTANT",
                help="ISO-8601 date or date-time; naive means UTC.",
            ),
        ] = None,
        end: Annotated[
            datetime | None,
            typer.Option(
                "--to",
                parser=parse_instant,
                metavar="INSTANT",
                help="Excluded. Default: the end of the current hour.",
            ),
        ] = None,
        symbols: Symbols = None,
    ) -> None:
        """Publish a range of history from one source, print what was published, and exit."""
        from metalcast_ingestor import bootstrap

        begin, stop_at = backfill_window(days, start, end)
        _print(asyncio.run(bootstrap.backfill(_settings(symbols), source, begin, stop_at)))

    @app.command()
    def replay(
        file: Annotated[
            Path,
            typer.Argument(
                exists=True, dir_okay=False, help="CSV or Parquet: timestamp,symbol,price."
            ),
        ],
    ) -> None:
        """Publish every row of a file, print what was published, and exit."""
        from metalcast_ingestor import bootstrap

        _print(asyncio.run(bootstrap.replay(_settings(), file)))

    return app

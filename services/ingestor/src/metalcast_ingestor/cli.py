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
        help="Fetch prices and publish them to prices.ticks.v1: on a schedule, once, a backfill "
        "of a range, or a file replay; daily bars to prices.bars.v1 (`bars`); FRED macro series to "
        "macro.observations.v1 (`macro`).",
    )

    @app.callback(invoke_without_command=True)
    def main(
        ctx: typer.Context,
        budget: Annotated[
            bool,
            typer.Option(
                "--budget", help="Print today's requests used and left per provider, and exit."
            ),
        ] = False,
    ) -> None:
        if ctx.invoked_subcommand is not None:
            return
        if not budget:
            typer.echo(ctx.get_help())
            raise typer.Exit(0)
        from metalcast_ingestor import bootstrap

        for status in bootstrap.budget_status(settings_factory()):
            typer.echo(
                f"{status.provider}: {status.used} of {status.limit} requests used on "
                f"{status.day.isoformat()} (UTC), {status.left} left"
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

    def _report_failures(result: dict[str, Any]) -> None:
        """Parts of a request the provider refused (a plan's limit, an unknown id): said on
        stderr, and the exit status is 1; what could be fetched was published."""
        failures = result.get("failures") or []
        for failure in failures:
            typer.echo(f"not fetched: {failure}", err=True)
        if failures:
            raise typer.Exit(1)

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
        result = asyncio.run(bootstrap.backfill(_settings(symbols), source, begin, stop_at))
        _print(result)
        _report_failures(result)

    @app.command()
    def bars(
        source: Annotated[str, typer.Option(help="The source of daily bars.")] = "alphavantage",
        full: Annotated[
            bool,
            typer.Option(
                "--full/--compact",
                help="The whole history (outputsize=full) or the last 100 trading days.",
            ),
        ] = False,
        symbols: Symbols = None,
        schedule: Annotated[
            bool,
            typer.Option(
                "--schedule",
                help="Run until stopped: now, then every day at METALCAST_INGEST__BARS_AT "
                "(UTC, after the US close), every catalogued equity and ETF not fetched since "
                "the latest close, within the day's request budget (the rest deferred, said "
                "in the log and the JSON line of each run).",
            ),
        ] = False,
    ) -> None:
        """Publish daily bars (open, high, low, close, volume) to prices.bars.v1, one request
        per symbol (default: every catalogued instrument the source serves); print what was
        published, the failures and the day's request budget."""
        from metalcast_ingestor import bootstrap
        from metalcast_ingestor.sources.base import SourceUnavailable

        if schedule:
            from metalcast_core import run_until_signal

            settings = _settings(symbols)
            run_until_signal(
                lambda stop: bootstrap.bars_schedule(
                    settings, source, stop, lambda report: _print(report.as_json())
                )
            )
            return

        try:
            result = asyncio.run(bootstrap.bars(_settings(symbols), source, full))
        except SourceUnavailable as exc:  # throttled, budget spent: retry later
            typer.echo(f"stopped: {exc}", err=True)
            raise typer.Exit(1) from None
        _print(result)
        _report_failures(result)

    @app.command()
    def macro(
        series: Annotated[
            list[str] | None,
            typer.Option(
                "--series",
                help="FRED series id; repeat for more. Default: METALCAST_INGEST__MACRO_SERIES, "
                "else the rows of macro.series.",
            ),
        ] = None,
        full: Annotated[
            bool,
            typer.Option(
                "--full/--recent",
                help="Every observation (a backfill of the whole history) or those of the last "
                "METALCAST_INGEST__MACRO_RECENT_DAYS days; every vintage of each.",
            ),
        ] = False,
        schedule: Annotated[
            bool,
            typer.Option(
                "--schedule",
                help="Pull now and then every day at METALCAST_INGEST__MACRO_DAILY_AT (UTC) "
                "until stopped.",
            ),
        ] = False,
    ) -> None:
        """Publish FRED macro observations with their vintages to macro.observations.v1 (bad
        rows to macro.observations.dlq); print what was published and the series FRED
        refused (exit status 1 then)."""
        from metalcast_ingestor import bootstrap
        from metalcast_ingestor.sources.base import SourceUnavailable

        settings = _settings()
        wanted = [s.upper() for s in series] if series else None
        try:
            if schedule:
                from metalcast_core import run_until_signal

                run_until_signal(lambda stop: bootstrap.macro_schedule(settings, wanted, stop))
                return
            result = asyncio.run(bootstrap.macro(settings, wanted, full))
        except (SourceUnavailable, ValueError) as exc:  # a refused key, no key, throttled
            typer.echo(f"stopped: {exc}", err=True)
            raise typer.Exit(1) from None
        _print(result)
        _report_failures(result)

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

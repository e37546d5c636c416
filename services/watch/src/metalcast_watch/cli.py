"""The watch's front door (``metalcast-watch``; ``metalcast watch`` mounts the same app): check
the pipeline once and exit 1, listing every problem, when it is unhealthy.

:func:`make_app` takes the settings factory, so the umbrella command and tests hand in their
own. It imports nothing but Typer until the command runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from metalcast_watch.config import WatchSettings

SettingsFactory = Callable[[], "WatchSettings"]


def make_app(settings_factory: SettingsFactory) -> typer.Typer:
    app = typer.Typer(
        subcommand_metavar="",  # no subcommands: no COMMAND in the usage line
        help="Check the pipeline once: stale ticks, a failed or stuck training run, the sink's "
        "and the trainer's consumer lag, dead-letter growth. Exits 1 listing every problem.",
    )

    @app.callback(invoke_without_command=True)
    def check() -> None:
        """Check the pipeline once; record the run in ops.watch_runs."""
        from metalcast_core import configure_logging
        from metalcast_watch.watch import WatchFailed, watch

        settings = settings_factory()
        configure_logging(settings.log_level)
        try:
            asyncio.run(watch(settings))
        except WatchFailed as exc:
            typer.secho(str(exc), fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from exc
        typer.echo("metalcast watch: all checks passed")

    return app

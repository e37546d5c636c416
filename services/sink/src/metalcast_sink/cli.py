"""The sink's front door (``metalcast-sink``; ``metalcast sink`` mounts the same app): consume
``prices.ticks.v1`` into PostgreSQL until stopped, or until every partition is consumed.

:func:`make_app` takes the settings factory, so the umbrella command and tests hand in their
own. It imports nothing heavy until the command runs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from metalcast_sink.config import SinkSettings

SettingsFactory = Callable[[], "SinkSettings"]


def make_app(settings_factory: SettingsFactory) -> typer.Typer:
    app = typer.Typer(
        subcommand_metavar="",  # no subcommands: no COMMAND in the usage line
        help="Consume prices.ticks.v1 into PostgreSQL (idempotently) and announce every "
        "written batch on pipeline.batch-loaded.v1, until stopped; then print the counters "
        "as JSON.",
    )

    @app.callback(invoke_without_command=True)
    def run(
        until_idle: Annotated[
            bool, typer.Option(help="Stop once every partition is consumed to its end.")
        ] = False,
    ) -> None:
        """Run the sink until stopped (SIGINT/SIGTERM); print its counters as JSON."""
        from metalcast_core import configure_logging, run_until_signal
        from metalcast_sink.bootstrap import run_sink

        settings = settings_factory()
        configure_logging(settings.log_level)
        stats = run_until_signal(lambda stop: run_sink(settings, stop=stop, until_idle=until_idle))
        typer.echo(json.dumps(dataclasses.asdict(stats)))

    return app

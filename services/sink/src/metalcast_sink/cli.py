"""The sink's front door (``metalcast-sink``; ``metalcast sink`` mounts the same app): consume
``prices.ticks.v1`` into PostgreSQL until stopped, or until every partition is consumed.

:func:`make_app` takes the settings factory, so the umbrella command and tests hand in their
own. It imports nothing heavy until the command runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from metalcast_sink.config import SinkSettings
    from metalcast_sink.dlq import Letter

SettingsFactory = Callable[[], "SinkSettings"]
Reason = Annotated[
    str | None, typer.Option(help="Only letters whose reason contains this (any case).")
]
Since = Annotated[
    datetime | None, typer.Option(help="Only letters that failed at or after this (UTC).")
]


def make_app(settings_factory: SettingsFactory) -> typer.Typer:
    app = typer.Typer(
        help="Consume prices.ticks.v1 into PostgreSQL (idempotently) and announce every "
        "written batch on pipeline.batch-loaded.v1, until stopped; then print the counters "
        "as JSON.",
    )

    @app.callback(invoke_without_command=True)
    def run(
        ctx: typer.Context,
        until_idle: Annotated[
            bool, typer.Option(help="Stop once every partition is consumed to its end.")
        ] = False,
    ) -> None:
        """Run the sink until stopped (SIGINT/SIGTERM); print its counters as JSON."""
        if ctx.invoked_subcommand is not None:
            return
        from metalcast_core import configure_logging, run_until_signal
        from metalcast_sink.bootstrap import run_sink

        settings = settings_factory()
        configure_logging(settings.log_level)
        stats = run_until_signal(lambda stop: run_sink(settings, stop=stop, until_idle=until_idle))
        typer.echo(json.dumps(dataclasses.asdict(stats)))

    app.add_typer(make_dlq_app(settings_factory), name="dlq")
    return app


def make_dlq_app(settings_factory: SettingsFactory) -> typer.Typer:
    app = typer.Typer(
        no_args_is_help=True,
        help="Dead letters (prices.ticks.dlq): list, show and replay them.",
    )

    def _read(reason: str | None, since: datetime | None, limit: int | None) -> list[Letter]:
        from metalcast_sink.dlq import read_letters

        settings = settings_factory()
        when = since.replace(tzinfo=UTC) if since and since.tzinfo is None else since
        return asyncio.run(read_letters(settings.kafka, reason=reason, since=when, limit=limit))

    @app.command("list")
    def list_(
        reason: Reason = None,
        since: Since = None,
        limit: Annotated[int, typer.Option(help="At most this many, the newest.")] = 50,
    ) -> None:
        """One line per dead letter: where, when, stage, source, size, reason."""
        letters = _read(reason, since, limit)
        for item in letters:
            d = item.letter
            size = d.original_size if d.truncated else len(d.original)
            cut = " (truncated)" if d.truncated else ""
            typer.echo(
                f"{item.partition}:{item.offset}  {d.failed_at:%Y-%m-%d %H:%M:%S}  {d.stage:<8} "
                f"{d.source}  {size} B{cut}  {d.reason}"
            )
        typer.echo(f"{len(letters)} dead letter(s)")

    @app.command("show")
    def show(
        where: Annotated[str, typer.Argument(help="PARTITION:OFFSET, as `list` prints it.")],
    ) -> None:
        """One dead letter in full (its original as text where it is UTF-8)."""
        try:
            partition, offset = (int(x) for x in where.split(":", 1))
        except ValueError:
            raise typer.BadParameter(f"{where!r} is not PARTITION:OFFSET") from None
        found = [
            i for i in _read(None, None, None) if (i.partition, i.offset) == (partition, offset)
        ]
        if not found:
            raise typer.BadParameter(f"no dead letter at {where}")
        d = found[0].letter
        fields = d.model_dump(mode="json", exclude={"original"})
        try:
            fields["original"] = d.original.decode()
        except UnicodeDecodeError:
            fields["original_hex"] = d.original[:256].hex()
        typer.echo(json.dumps(fields, indent=2))

    @app.command("replay")
    def replay_(
        reason: Reason = None,
        since: Since = None,
        dry_run: Annotated[bool, typer.Option(help="Say what would be replayed.")] = False,
    ) -> None:
        """Publish the originals of the matching letters to prices.ticks.v1 again (keyed by
        their symbol): the sink judges them anew; still-bad ones return to the DLQ."""
        from metalcast_sink.dlq import replay, replay_key

        letters = _read(reason, since, None)
        for item in letters:
            _key, why = replay_key(item.letter)
            if why is not None:
                typer.echo(f"skip {item.partition}:{item.offset}: {why}")
        if dry_run:
            ready = sum(1 for i in letters if replay_key(i.letter)[1] is None)
            typer.echo(f"would replay {ready} of {len(letters)} dead letter(s)")
            return
        counts = asyncio.run(replay(settings_factory().kafka, letters))
        typer.echo(f"replayed {counts['replayed']}, skipped {counts['skipped']}")

    return app

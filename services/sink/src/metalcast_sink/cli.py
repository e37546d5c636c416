"""The sink's front door (``metalcast-sink``; ``metalcast sink`` mounts the same app): consume
``prices.ticks.v1`` into PostgreSQL until stopped, or until every partition is consumed.

:func:`make_app` takes the settings factory, so the umbrella command and tests hand in their
own. It imports nothing heavy until the command runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from metalcast_sink.config import SinkSettings
    from metalcast_sink.dlq import Letter

SettingsFactory = Callable[[], "SinkSettings"]
T = TypeVar("T")
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

    @app.command("bars")
    def bars(
        until_idle: Annotated[
            bool, typer.Option(help="Stop once every partition is consumed to its end.")
        ] = False,
    ) -> None:
        """Consume prices.bars.v1 (daily bars) into prices.bars until stopped; print the
        counters as JSON."""
        from metalcast_core import configure_logging, run_until_signal
        from metalcast_sink.bootstrap import run_bar_sink

        settings = settings_factory()
        configure_logging(settings.log_level)
        stats = run_until_signal(
            lambda stop: run_bar_sink(settings, stop=stop, until_idle=until_idle)
        )
        typer.echo(json.dumps(dataclasses.asdict(stats)))

    @app.command("macro")
    def macro(
        until_idle: Annotated[
            bool, typer.Option(help="Stop once every partition is consumed to its end.")
        ] = False,
    ) -> None:
        """Consume macro.observations.v1 (FRED vintages) into macro.observations until
        stopped; print the counters as JSON."""
        from metalcast_core import configure_logging, run_until_signal
        from metalcast_sink.bootstrap import run_macro_sink

        settings = settings_factory()
        configure_logging(settings.log_level)
        stats = run_until_signal(
            lambda stop: run_macro_sink(settings, stop=stop, until_idle=until_idle)
        )
        typer.echo(json.dumps(dataclasses.asdict(stats)))

    return app


def make_instruments_app(settings_factory: SettingsFactory) -> typer.Typer:
    """``metalcast instruments``: the instrument catalogue (ref.instruments) that the sink,
    the ingestor, the trainer and the API read."""
    app = typer.Typer(
        no_args_is_help=True,
        help="The instrument catalogue (ref.instruments): list, add, remove, and sync it from "
        "infra/instruments.toml. Changes take effect without a redeploy.",
    )

    def _run(work: Callable[[Any], Awaitable[T]]) -> T:
        from metalcast_core import connect

        settings = settings_factory()

        async def go() -> T:
            conn = await connect(settings.postgres)
            try:
                return await work(conn)
            finally:
                await conn.close()

        return asyncio.run(go())

    @app.command("list")
    def list_(
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    ) -> None:
        """Every catalogued instrument: symbol, kind, cadence, currency, unit, providers."""
        from metalcast_core import fetch_catalogue

        for inst in _run(fetch_catalogue):
            if as_json:
                typer.echo(inst.model_dump_json())
                continue
            providers = ", ".join(f"{p}={c}" for p, c in sorted(inst.providers.items()))
            model = f"x_size {inst.model.x_size}" if inst.model else "no model"
            typer.echo(
                f"{inst.symbol:<8} {inst.kind:<7} {inst.cadence:<7} {inst.currency} "
                f"{inst.unit or '-':<11} {model:<10} {providers}"
            )

    @app.command("add")
    def add(
        symbol: Annotated[str, typer.Argument(help="Our symbol, e.g. SOL or QQQ.")],
        kind: Annotated[str, typer.Option(help="metal, crypto, equity, etf, fx or macro.")],
        provider: Annotated[
            list[str],
            typer.Option(
                "--provider",
                help="PROVIDER=ID, e.g. coingecko=solana or alphavantage=QQQ; repeat for more.",
            ),
        ],
        cadence: Annotated[str, typer.Option(help="hourly (ticks) or daily (bars).")] = "hourly",
        currency: Annotated[str, typer.Option(help="ISO 4217 code of its prices.")] = "USD",
        unit: Annotated[str, typer.Option(help="What one price is for: coin, share, ...")] = "",
        name: Annotated[str, typer.Option(help="A human name.")] = "",
        x_size: Annotated[
            int | None,
            typer.Option(help="Train a model on this many entries (hours or days)."),
        ] = None,
        candidate: Annotated[
            list[str] | None,
            typer.Option(help="A model family to backtest (with --x-size); repeat for more."),
        ] = None,
    ) -> None:
        """Add an instrument, or change it if the symbol is catalogued already."""
        from pydantic import ValidationError

        from metalcast_core import Instrument, ModelConfig, upsert_instruments

        providers: dict[str, str] = {}
        for item in provider:
            key, sep, code = item.partition("=")
            if not sep or not key.strip() or not code.strip():
                raise typer.BadParameter(f"{item!r} is not PROVIDER=ID", param_hint="'--provider'")
            providers[key.strip()] = code.strip()
        model = None
        if x_size is not None:
            model = ModelConfig(
                x_size=x_size, candidates=tuple(candidate or ModelConfig().candidates)
            )
        try:
            inst = Instrument(
                symbol=symbol.upper(),
                name=name,
                kind=kind,  # validated by the model
                currency=currency.upper(),
                unit=unit,
                cadence=cadence,
                providers=providers,
                model=model,
            )
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            raise typer.BadParameter(f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        changed = _run(lambda conn: upsert_instruments(conn, [inst]))
        typer.echo(f"{inst.symbol}: {'added or changed' if changed else 'unchanged'}")

    @app.command("remove")
    def remove(symbol: Annotated[str, typer.Argument(help="The symbol to drop.")]) -> None:
        """Drop an instrument from the catalogue (its stored prices stay)."""
        from metalcast_core import remove_instrument

        if not _run(lambda conn: remove_instrument(conn, symbol.upper())):
            raise typer.BadParameter(f"{symbol.upper()} is not catalogued")
        typer.echo(f"{symbol.upper()}: removed")

    @app.command("sync")
    def sync(
        file: Annotated[
            Path | None,
            typer.Option(help="The catalogue file. Default: infra/instruments.toml."),
        ] = None,
    ) -> None:
        """Upsert every entry of the catalogue file into ref.instruments."""
        from metalcast_core import CatalogueError, load_catalogue_file, upsert_instruments

        try:
            instruments = load_catalogue_file(file)
        except (CatalogueError, OSError) as exc:
            raise typer.BadParameter(str(exc), param_hint="'--file'") from None
        changed = _run(lambda conn: upsert_instruments(conn, instruments))
        typer.echo(f"{len(instruments)} instrument(s) in the file, {changed} added or changed")

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

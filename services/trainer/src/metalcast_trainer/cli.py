"""The trainer's front door (``metalcast-trainer``; ``metalcast train`` and ``metalcast models``
mount the same apps): serve or train once, and the model registry's commands.

:func:`make_app` and :func:`make_models_app` take the settings factory, so the umbrella
command and tests hand in their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tempfile
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    import asyncpg

    from metalcast_core import KafkaSettings
    from metalcast_models.registry import PointerMove
    from metalcast_trainer.config import TrainerSettings

T = TypeVar("T")
SettingsFactory = Callable[[], "TrainerSettings"]


def make_app(settings_factory: SettingsFactory) -> typer.Typer:
    app = typer.Typer(
        help="Backtest every candidate, decide champion/challenger and retrain one model per "
        "metal when new data lands."
    )

    @app.callback(invoke_without_command=True)
    def serve(
        ctx: typer.Context,
        once: Annotated[
            bool, typer.Option("--once", help="Train now on the current windows and exit.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
    ) -> None:
        """Consume pipeline.batch-loaded.v1 and train on every (coalesced) event until stopped."""
        if ctx.invoked_subcommand is not None:
            return
        from metalcast_core import configure_logging, run_until_signal
        from metalcast_trainer.bootstrap import run_trainer, train_once

        settings = settings_factory()
        configure_logging(settings.log_level)
        if not once:
            run_until_signal(lambda stop: run_trainer(settings, stop))
            return
        report = asyncio.run(train_once(settings))
        if as_json:
            typer.echo(json.dumps(dataclasses.asdict(report), default=str))
        else:
            typer.echo(
                f"run {report.run_id} {report.status}: new versions {report.versions}, "
                f"promoted {report.promoted}, unchanged {report.unchanged}"
            )
            for symbol, why in report.decisions.items():
                typer.echo(f"  {symbol}: {why}")
            for symbol, reason in report.failed.items():
                typer.echo(f"  {symbol} not trained: {reason}")
        raise typer.Exit(0 if report.status in {"succeeded", "partial", "unchanged"} else 1)

    @app.command("valuation")
    def valuation(
        as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
    ) -> None:
        """Retrain the gold valuation model now (docs/valuation.md), record the run, exit."""
        from metalcast_core import configure_logging
        from metalcast_trainer.bootstrap import value_once

        settings = settings_factory()
        configure_logging(settings.log_level)
        report = asyncio.run(value_once(settings))
        if as_json:
            typer.echo(json.dumps(dataclasses.asdict(report), default=str))
        else:
            typer.echo(
                f"run {report.run_id} {report.status}: versions {report.versions}, "
                f"promoted {report.promoted}, unchanged {report.unchanged}"
            )
            for symbol, why in {**report.decisions, **report.failed}.items():
                typer.echo(f"  {symbol}: {why}")
        raise typer.Exit(0 if report.status in {"succeeded", "unchanged"} else 1)

    app.add_typer(make_models_app(settings_factory), name="models")
    return app


def make_models_app(settings_factory: SettingsFactory) -> typer.Typer:
    app = typer.Typer(no_args_is_help=True, help="Model versions and the production pointer.")

    def with_conn(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        from metalcast_core import connect

        async def go() -> T:
            conn = await connect(settings_factory().postgres)
            try:
                return await work(conn)
            finally:
                await conn.close()

        return asyncio.run(go())

    @app.command("list")
    def models_list() -> None:
        """The production version of every metal: candidate, window, backtest against naive,
        calibrated coverage, pin."""
        from metalcast_models import registry

        async def load(conn: asyncpg.Connection) -> list[tuple[registry.VersionInfo, object]]:
            return [
                (v, await registry.pin(conn, v.symbol)) for v in await registry.production(conn)
            ]

        current = with_conn(load)
        if not current:
            typer.echo("no model in production yet: run `metalcast train --once`")
            return
        typer.echo(
            f"{'symbol':<7}{'ver':>4}  {'model':<7}{'window (UTC)':<25}{'hours':>6}"
            f"{'MASE':>7}{'÷naive':>8}{'cov80':>7}{'cov95':>7}  pinned"
        )
        for v, pin in current:
            summary = v.backtest.get("summary", {})
            pinned = (
                f"by {pin.pinned_by}: {pin.reason or ''}" if isinstance(pin, registry.Pin) else "-"
            )
            typer.echo(
                f"{v.symbol:<7}{v.version:>4}  {v.candidate or v.family:<7}"
                f"{v.window_start:%m-%d %H:%M}..{v.window_end:%m-%d %H:%M}  "
                f"{v.window_hours or '-':>6}{_num(summary.get('mase')):>7}"
                f"{_num(summary.get('mae_ratio')):>8}{_pct(summary.get('coverage_80')):>7}"
                f"{_pct(summary.get('coverage_95')):>7}  {pinned}"
            )

    @app.command("show")
    def models_show(
        symbol: str,
        full: Annotated[bool, typer.Option(help="Print every field as JSON.")] = False,
    ) -> None:
        """Every version of SYMBOL, newest first, and why it was or was not promoted."""
        from metalcast_models import registry

        found = with_conn(lambda conn: registry.versions(conn, symbol.upper()))
        if not found:
            raise typer.BadParameter(f"no model versions of {symbol.upper()}")
        for v in found:
            if full:
                typer.echo(json.dumps(dataclasses.asdict(v), default=str, indent=2))
                continue
            state = "PRODUCTION" if v.in_production else ("deleted" if v.deleted_at else "")
            mase = v.backtest.get("summary", {}).get("mase")
            typer.echo(
                f"v{v.version:<4} {v.candidate or v.family:<7} {v.created_at:%Y-%m-%d %H:%M} "
                f"window {v.window_start:%m-%d %H:%M}..{v.window_end:%m-%d %H:%M} "
                f"({v.window_hours or '-'} h) MASE {_num(mase)} {state}"
            )
            if v.decision:
                typer.echo(f"       {v.decision}")

    @app.command("history")
    def models_history(symbol: str) -> None:
        """Every move of SYMBOL's production pointer: who, when, why, from -> to, pinned."""
        from metalcast_models import registry

        for r in with_conn(lambda conn: registry.history(conn, symbol.upper())):
            pinned = " [pinned]" if r["pinned"] else ""
            typer.echo(
                f"{r['changed_at']:%Y-%m-%d %H:%M:%S} {r['action']:<8} v{r['from_version']} -> "
                f"v{r['to_version']} by {r['changed_by']}{pinned}: {r['note'] or ''}"
            )

    @app.command("rollback")
    def models_rollback(
        symbol: str,
        to: Annotated[
            int | None, typer.Option(help="Target version (default: the previous).")
        ] = None,
        by: Annotated[str, typer.Option(help="Who moves the pointer (recorded).")] = "cli",
        reason: Annotated[str | None, typer.Option(help="Why (recorded with the pin).")] = None,
    ) -> None:
        """Point SYMBOL's production at another version, after checking its file loads, and
        pin it there: the trainer keeps training but never moves a pinned pointer (`unpin`)."""
        from metalcast_core import make_s3_client
        from metalcast_models import registry

        settings = settings_factory()
        s3 = make_s3_client(settings.s3)
        with tempfile.TemporaryDirectory() as work:
            try:
                move = with_conn(
                    lambda conn: registry.rollback(
                        conn, s3, symbol.upper(), to, by, work, reason=reason
                    )
                )
            except registry.RollbackRefused as exc:
                typer.secho(f"refused: {exc}", fg="red", err=True)
                raise typer.Exit(1) from exc
        _announce(settings.kafka, move)
        typer.echo(
            f"{move.symbol}: v{move.from_version} -> v{move.to_version} ({move.action} by {by}), "
            f"pinned: `metalcast models unpin {move.symbol}` hands it back to the trainer"
        )

    @app.command("unpin")
    def models_unpin(
        symbol: str,
        by: Annotated[str, typer.Option(help="Who unpins (recorded).")] = "cli",
        reason: Annotated[str | None, typer.Option(help="Why (recorded).")] = None,
    ) -> None:
        """Hand SYMBOL's production pointer back to champion/challenger."""
        from metalcast_models import registry

        settings = settings_factory()
        try:
            move = with_conn(lambda conn: registry.unpin(conn, symbol.upper(), by, reason))
        except registry.RollbackRefused as exc:
            typer.secho(f"refused: {exc}", fg="red", err=True)
            raise typer.Exit(1) from exc
        _announce(settings.kafka, move)
        typer.echo(f"{move.symbol}: unpinned at v{move.to_version}; the trainer decides again")

    @app.command("prune")
    def models_prune(
        older_than_hours: Annotated[
            float | None,
            typer.Option(help="Age limit (default: METALCAST_TRAINER__RETENTION_HOURS)."),
        ] = None,
    ) -> None:
        """Delete the files of versions that never served production and are older than the
        limit; a version that ever served production, or is pinned, is never deleted."""
        from metalcast_core import make_s3_client
        from metalcast_models import registry

        settings = settings_factory()
        hours = settings.trainer.retention_hours if older_than_hours is None else older_than_hours
        s3 = make_s3_client(settings.s3)
        deleted = with_conn(lambda conn: registry.retention(conn, s3, hours * 3600.0))
        typer.echo(f"deleted {len(deleted)} version(s) older than {hours:g} h: {deleted or '-'}")

    return app


def _announce(kafka: KafkaSettings, move: PointerMove) -> None:
    """Publish models.production.v1 so the API and the dashboard follow at once."""
    from metalcast_core import PRODUCTION_CHANGED, publish_once

    try:
        asyncio.run(publish_once(kafka, PRODUCTION_CHANGED, [(move.symbol, move.event())]))
    except Exception as exc:  # the move is committed; the API's pointer check catches up
        typer.secho(f"warning: not announced on Kafka ({exc})", fg="yellow", err=True)


def _pct(value: object) -> str:
    return f"{100 * value:.1f}" if isinstance(value, int | float) else "-"


def _num(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "-"

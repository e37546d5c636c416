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
    from metalcast_core import KafkaSettings
    from metalcast_models.registry import PointerMove

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
    """Run the trainer: backtest, decide and retrain one model per metal on every batch-loaded
    event."""
    from metalcast_core import configure_logging
    from metalcast_trainer.bootstrap import run_trainer, train_once
    from metalcast_trainer.config import TrainerSettings

    settings = TrainerSettings()
    configure_logging(settings.log_level)
    if once:
        report = asyncio.run(train_once(settings))
        typer.echo(
            f"run {report.run_id} {report.status}: new versions {report.versions}, "
            f"promoted {report.promoted}, unchanged {report.unchanged}"
        )
        for symbol, why in report.decisions.items():
            typer.echo(f"  {symbol}: {why}")
        for symbol, reason in report.failed.items():
            typer.echo(f"  {symbol} not trained: {reason}")
        raise typer.Exit(0 if report.status in {"succeeded", "partial", "unchanged"} else 1)
    run_until_signal(lambda stop: run_trainer(settings, stop))


models_app = typer.Typer(no_args_is_help=True, help="Model versions and the production pointer.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list() -> None:
    """The production version of every metal: candidate, window, backtest against naive,
    calibrated coverage, pin."""
    from metalcast_models import registry

    async def load(conn: asyncpg.Connection) -> list[tuple[registry.VersionInfo, object]]:
        return [(v, await registry.pin(conn, v.symbol)) for v in await registry.production(conn)]

    current = asyncio.run(_with_conn(load))
    if not current:
        typer.echo("no model in production yet: run `metalcast train --once`")
        return
    typer.echo(
        f"{'symbol':<7}{'ver':>4}  {'model':<7}{'window (UTC)':<25}{'hours':>6}"
        f"{'MASE':>7}{'÷naive':>8}{'cov80':>7}{'cov95':>7}  pinned"
    )
    for v, pin in current:
        summary = v.backtest.get("summary", {})
        typer.echo(
            f"{v.symbol:<7}{v.version:>4}  {v.candidate or v.family:<7}"
            f"{v.window_start:%m-%d %H:%M}..{v.window_end:%m-%d %H:%M}  "
            f"{v.window_hours or '-':>6}{_num(summary.get('mase')):>7}"
            f"{_num(summary.get('mae_ratio')):>8}{_pct(summary.get('coverage_80')):>7}"
            f"{_pct(summary.get('coverage_95')):>7}  "
            + (f"by {pin.pinned_by}: {pin.reason or ''}" if isinstance(pin, registry.Pin) else "-")
        )


@models_app.command("show")
def models_show(
    symbol: str,
    full: Annotated[bool, typer.Option(help="Print every field as JSON.")] = False,
) -> None:
    """Every version of SYMBOL, newest first, and why it was or was not promoted."""
    import dataclasses

    from metalcast_models import registry

    found = asyncio.run(_with_conn(lambda conn: registry.versions(conn, symbol.upper())))
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


@models_app.command("history")
def models_history(symbol: str) -> None:
    """Every move of SYMBOL's production pointer: who, when, why, from -> to, pinned."""
    from metalcast_models import registry

    rows = asyncio.run(_with_conn(lambda conn: registry.history(conn, symbol.upper())))
    for r in rows:
        pinned = " [pinned]" if r["pinned"] else ""
        typer.echo(
            f"{r['changed_at']:%Y-%m-%d %H:%M:%S} {r['action']:<8} v{r['from_version']} -> "
            f"v{r['to_version']} by {r['changed_by']}{pinned}: {r['note'] or ''}"
        )


@models_app.command("rollback")
def models_rollback(
    symbol: str,
    to: Annotated[int | None, typer.Option(help="Target version (default: the previous).")] = None,
    by: Annotated[str, typer.Option(help="Who moves the pointer (recorded).")] = "cli",
    reason: Annotated[str | None, typer.Option(help="Why (recorded with the pin).")] = None,
) -> None:
    """Point SYMBOL's production at another version, after checking its file loads, and pin
    it there: the trainer keeps training but never moves a pinned pointer (see `unpin`)."""
    import tempfile

    from metalcast_core import make_s3_client
    from metalcast_models import registry
    from metalcast_trainer.config import TrainerSettings

    settings = TrainerSettings()
    s3 = make_s3_client(settings.s3)
    with tempfile.TemporaryDirectory() as work:
        try:
            move = asyncio.run(
                _with_conn(
                    lambda conn: registry.rollback(
                        conn, s3, symbol.upper(), to, by, work, reason=reason
                    )
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


@models_app.command("unpin")
def models_unpin(
    symbol: str,
    by: Annotated[str, typer.Option(help="Who unpins (recorded).")] = "cli",
    reason: Annotated[str | None, typer.Option(help="Why (recorded).")] = None,
) -> None:
    """Hand SYMBOL's production pointer back to champion/challenger."""
    from metalcast_models import registry
    from metalcast_trainer.config import TrainerSettings

    settings = TrainerSettings()
    try:
        move = asyncio.run(
            _with_conn(lambda conn: registry.unpin(conn, symbol.upper(), by, reason))
        )
    except registry.RollbackRefused as exc:
        typer.secho(f"refused: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    _announce(settings.kafka, move)
    typer.echo(f"{move.symbol}: unpinned at v{move.to_version}; the trainer decides again")


@models_app.command("prune")
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
    from metalcast_trainer.config import TrainerSettings

    settings = TrainerSettings()
    hours = settings.trainer.retention_hours if older_than_hours is None else older_than_hours
    s3 = make_s3_client(settings.s3)
    deleted = asyncio.run(_with_conn(lambda conn: registry.retention(conn, s3, hours * 3600.0)))
    typer.echo(f"deleted {len(deleted)} version(s) older than {hours:g} h: {deleted or '-'}")


def _announce(kafka: KafkaSettings, move: PointerMove) -> None:
    """Publish models.production.v1 so the API and dashboard follow at once."""
    from metalcast_core import PRODUCTION_CHANGED, publish_once

    try:
        asyncio.run(publish_once(kafka, PRODUCTION_CHANGED, [(move.symbol, move.event())]))
    except Exception as exc:  # the move is committed; the API's pointer check catches up
        typer.secho(f"warning: not announced on Kafka ({exc})", fg="yellow", err=True)


def _pct(value: object) -> str:
    return f"{100 * value:.1f}" if isinstance(value, int | float) else "-"


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

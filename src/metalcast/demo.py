"""``metalcast demo``: the whole flow on the local stack: ingest, store, train, serve."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta

import asyncpg
import typer

from metalcast import stack
from metalcast_core import METALS, configure_logging
from metalcast_core import migrate as run_migrations


def _step(message: str) -> float:
    typer.secho(f"==> {message}", bold=True)
    return time.monotonic()


def _done(started: float, detail: str = "") -> None:
    typer.echo(f"    done in {time.monotonic() - started:.1f} s{'  ' + detail if detail else ''}")


def run_demo(hours: int = 72, with_airflow: bool = False, serve: bool = True) -> None:
    what = "PostgreSQL, Kafka, S3" + (", Airflow" if with_airflow else "")
    t = _step(f"starting the local stack ({what})")
    stack.up(with_airflow=with_airflow)
    # The demo is a composition root: every service below reads its settings from here.
    os.environ.update(stack.env())
    _done(t)
    asyncio.run(_flow(hours))
    _airflow_login()
    _serve(serve)


def _airflow_login() -> None:
    from metalcast.stack import StackConfig, airflow

    config = StackConfig.from_environ()
    login = airflow.login(config)
    if airflow.health(config) is None:
        typer.echo(f"\nAirflow: not running (metalcast stack up --with-airflow; UI {login.url})")
        return
    typer.secho("\nAirflow (metalcast_backup every 6 h, metalcast_watch hourly)", bold=True)
    typer.echo(f"  UI {login.url}  user {login.username}  password {login.password}")


async def _flow(hours: int) -> None:
    from metalcast_ingestor import bootstrap as ingestor
    from metalcast_ingestor.config import IngestorSettings
    from metalcast_sink.bootstrap import run_sink
    from metalcast_sink.config import SinkSettings
    from metalcast_trainer.bootstrap import train_once
    from metalcast_trainer.config import TrainerSettings

    settings = IngestorSettings()
    configure_logging("WARNING")

    t = _step("applying migrations")
    applied = await run_migrations(settings.postgres, settings.migrations_dir)
    _done(t, f"{len(applied)} applied")

    end = ingestor.current_hour() + timedelta(hours=1)
    start = end - timedelta(hours=hours)
    t = _step(f"backfilling {hours} h of simulated prices for {', '.join(settings.ingest.symbols)}")
    stats = await ingestor.backfill(settings, "simulated", start, end)
    _done(t, f"{stats['published']} ticks published, {stats['dead_lettered']} dead-lettered")

    t = _step("sinking prices.ticks.v1 into PostgreSQL")
    sink_stats = await run_sink(SinkSettings(), until_idle=True)
    _done(t, f"{sink_stats.rows_inserted} new rows from {sink_stats.ticks_received} ticks")

    await _report(settings.postgres.url)

    t = _step(
        "training one model per metal: every candidate backtested (the data scientists' "
        "ARIMA(1,1,0)+c, naive, drift, theta, ses), champion/challenger"
    )
    report = await train_once(TrainerSettings())
    _done(t, f"run {report.run_id} {report.status}")
    for symbol, version in sorted(report.promoted.items()):
        typer.echo(f"    {symbol}: version {version} in production: {report.decisions[symbol]}")
    for symbol, reason in sorted(report.failed.items()):
        typer.echo(f"    {symbol}: not trained: {reason}")


async def _report(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        ticks = await conn.fetch(
            "SELECT symbol, count(*) AS n, max(observed_at) AS newest "
            "FROM prices.ticks GROUP BY symbol ORDER BY symbol"
        )
        hourly = await conn.fetchval("SELECT count(*) FROM analytics.metal_prices")
        window = await conn.fetch("SELECT * FROM ml.metal_prices_training ORDER BY ts")
    finally:
        await conn.close()
    typer.secho("\nprices.ticks", bold=True)
    for r in ticks:
        typer.echo(f"  {r['symbol']:<5} {r['n']:>7} ticks, newest {r['newest']:%Y-%m-%d %H:%M} UTC")
    typer.secho(f"\nanalytics.metal_prices: {hourly} hourly rows", bold=True)
    typer.secho(f"ml.metal_prices_training: {len(window)} rows (the newest)", bold=True)
    header = "  " + f"{'hour (UTC)':<17}" + "".join(f"{m.symbol:>11}" for m in METALS)
    typer.echo(header)
    for r in window:
        cells = "".join(
            f"{float(r[m.column]):>11.2f}" if r[m.column] is not None else f"{'-':>11}"
            for m in METALS
        )
        typer.echo(f"  {r['ts']:%Y-%m-%d %H:%M}{cells}")


def _serve(serve: bool) -> None:
    """The last step: serve the API and the dashboard until Ctrl-C (or say how to)."""
    from metalcast_api.__main__ import serve as serve_api
    from metalcast_api.config import ApiSettings

    settings = ApiSettings()
    url = f"http://{settings.api.host}:{settings.api.port}/"
    if not serve:
        typer.secho(f"\ndashboard: run `uv run metalcast api`, then open {url}", bold=True)
        return
    typer.secho(f"\n==> serving the dashboard at {url} (API under /v1; Ctrl-C stops)", bold=True)
    serve_api(settings)

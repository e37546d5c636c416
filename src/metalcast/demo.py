"""``metalcast demo``: the whole flow on the local stack: ingest, store, train, then keep it
alive: the sink and the trainer run as services, a simulated feed publishes the last
``live_hours`` hours one every ``tick_s`` seconds (then one an hour, as a real feed would),
and the API serves the dashboard, so prices move and models retrain before the user's eyes.
Ctrl-C stops everything."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
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


def run_demo(
    hours: int = 72,
    with_airflow: bool = False,
    serve: bool = True,
    live_hours: int = 24,
    tick_s: float = 5.0,
) -> None:
    what = "PostgreSQL, Kafka, S3" + (", Airflow" if with_airflow else "")
    t = _step(f"starting the local stack ({what})")
    stack.up(with_airflow=with_airflow, progress=typer.echo)
    # The demo is a composition root: every service below reads its settings from here.
    os.environ.update(stack.env())
    _done(t)
    live_hours = max(0, min(live_hours, hours - 24)) if serve else 0
    asyncio.run(_flow(hours, live_hours))
    _doors(with_airflow)
    if not serve:
        typer.secho("\nserve the dashboard: uv run metalcast api", bold=True)
        return
    from metalcast_core import run_until_signal

    run_until_signal(lambda stop: _live(stop, live_hours, tick_s))


def _doors(with_airflow: bool) -> None:
    """Every door a user has, with its login."""
    from metalcast.stack import StackConfig, airflow, offsite
    from metalcast.stack.minio import s3_settings
    from metalcast_api.config import ApiSettings

    config = StackConfig.from_environ()
    api = ApiSettings().api
    base = f"http://{api.host}:{api.port}"
    s3 = s3_settings(config)
    env = stack.env(config)
    typer.secho("\nDoors", bold=True)
    typer.echo(f"  dashboard       {base}/")
    typer.echo(
        f"  instruments     {base}/instruments/crypto, /instruments/equity, … (a page per kind)"
    )
    typer.echo(
        f"  gold valuation  {base}/valuation  (once 505 daily closes and the FRED series are "
        "in: docs/valuation.md)"
    )
    typer.echo(f"  API docs        {base}/docs  (OpenAPI: {base}/openapi.json)")
    typer.echo(
        f"  MinIO console   http://{config.host}:{config.s3_console_port}/  user "
        f"{s3.access_key_id.get_secret_value()}  password "
        f"{s3.secret_access_key.get_secret_value()}"
    )
    if offsite.enabled(config):
        remote = offsite.offsite_settings(config)
        typer.echo(
            f"  backups off-box http://{config.host}:{config.s3_offsite_console_port}/  user "
            f"{remote.access_key_id.get_secret_value()}  password "
            f"{remote.secret_access_key.get_secret_value()}  (the second MinIO)"
        )
    login = airflow.login(config)
    if with_airflow and airflow.health(config) is not None:
        typer.echo(
            f"  Airflow UI      {login.url}  user {login.username}  password {login.password}"
        )
    else:
        typer.echo(
            "  Airflow UI      not started: make demo-airflow (metalcast demo --with-airflow)"
        )
    typer.echo(f"  PostgreSQL      psql '{env['METALCAST_POSTGRES__URL']}'")
    kafka = env["METALCAST_KAFKA__BOOTSTRAP_SERVERS"]
    typer.echo(f"  Kafka           kcat -b {kafka} -C -t prices.ticks.v1")
    from metalcast_ingestor.config import IngestorSettings
    from metalcast_sink.config import SinkSettings
    from metalcast_trainer.config import TrainerSettings

    for name, door in (
        ("sink", SinkSettings().sink),
        ("trainer", TrainerSettings().trainer),
        ("ingestor", IngestorSettings().ingest),
    ):
        if door.metrics_port:
            where = f"http://{door.metrics_host}:{door.metrics_port}"
            typer.echo(f"  {name + ' health':<15} {where}/healthz  (Prometheus: {where}/metrics)")
    typer.echo("  every variable  uv run metalcast stack env")


class _Server:  # uvicorn without its own signal handling: the demo's stop event rules
    def __init__(self) -> None:
        import uvicorn

        from metalcast_api.app import create_app
        from metalcast_api.config import ApiSettings

        settings = ApiSettings()

        class Quiet(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        self.server = Quiet(
            uvicorn.Config(
                create_app(settings),
                host=settings.api.host,
                port=settings.api.port,
                log_level="warning",
                access_log=False,
            )
        )

    async def run(self, stop: asyncio.Event) -> None:
        serving = asyncio.create_task(self.server.serve())
        await stop.wait()
        self.server.should_exit = True
        await serving


async def _live(stop: asyncio.Event, live_hours: int, tick_s: float) -> None:
    """The system running until ``stop``: sink, trainer, API, and a simulated feed."""
    from metalcast_sink.bootstrap import run_sink
    from metalcast_sink.config import SinkSettings
    from metalcast_trainer.bootstrap import run_trainer
    from metalcast_trainer.config import TrainerSettings

    typer.secho(
        f"\n==> live: the sink and the trainer run as services; a simulated feed publishes "
        f"the last {live_hours} h one every {tick_s:g} s, then one an hour; the dashboard "
        f"moves and models retrain. Ctrl-C stops everything.",
        bold=True,
    )
    tasks = [
        asyncio.create_task(run_sink(SinkSettings(), stop=stop), name="sink"),
        asyncio.create_task(run_trainer(TrainerSettings(), stop), name="trainer"),
        asyncio.create_task(_Server().run(stop), name="api"),
        asyncio.create_task(_feed(stop, live_hours, tick_s), name="feed"),
    ]
    done, _ = await asyncio.wait(
        [*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    for task in done:
        if task in tasks and task.exception() is not None:
            typer.secho(f"{task.get_name()} stopped: {task.exception()!r}", fg="red", err=True)
    stop.set()
    _, pending = await asyncio.wait(tasks, timeout=3)
    if pending:
        typer.echo(f"stopping: waiting for {', '.join(sorted(t.get_name() for t in pending))}")
    await asyncio.gather(*tasks, return_exceptions=True)
    typer.echo("stopped: sink, trainer, API and the simulated feed")


async def _feed(stop: asyncio.Event, live_hours: int, tick_s: float) -> None:
    """Publish the simulated hours the backfill left out, one every ``tick_s`` seconds (each
    labelled source ``simulated``), then poll the simulated source every hour."""
    from metalcast_ingestor import bootstrap as ingestor
    from metalcast_ingestor.config import IngestorSettings

    settings = IngestorSettings()
    end = ingestor.current_hour() + timedelta(hours=1)
    for i in range(live_hours, 0, -1):
        hour = end - timedelta(hours=i)
        stats = await ingestor.backfill(settings, "simulated", hour, hour + timedelta(hours=1))
        typer.echo(
            f"    feed: {hour:%Y-%m-%d %H:%M} UTC, {stats['published']} simulated ticks published"
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), tick_s)
        if stop.is_set():
            return
    live = settings.model_copy(
        update={"ingest": settings.ingest.model_copy(update={"sources": ["simulated"]})}
    )
    await ingestor.schedule(live, ["simulated"], stop)


async def _flow(hours: int, live_hours: int = 0) -> None:
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
    end -= timedelta(hours=live_hours)  # the live feed publishes the rest
    t = _step(
        f"backfilling {hours - live_hours} h of simulated prices for "
        f"{', '.join(settings.ingest.symbols)}"
    )
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

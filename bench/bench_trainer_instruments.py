"""A model per instrument, many instruments: what one load costs the trainer.

N daily instruments (default 1,000) are catalogued with a model (``x_size`` 20, candidates
naive and drift) and seeded with D days of bars (a seeded random walk), in an isolated world
(a database, topics and buckets of its own) on the local stack. Then, with the trainer's
real code (instruments in batches, each batch's CPU work in its process pool of one BLAS
thread per worker; database, S3 uploads, registry as in production):

1. the runner, first run: every instrument backtested from scratch, fitted, uploaded,
   promoted;
2. the runner, one load (twice): one new bar per instrument, then the run a batch-loaded
   event touching all of them triggers (cached backtest forecasts reused, one new origin per
   candidate);
3. the runner, the same load with the pool off (batches in threads), for comparison;
4. the service, through Kafka (twice): one new bar per instrument, then the clock runs from
   publishing one ``batch-loaded`` event naming all of them to the last
   ``models.trained.v1`` event that accounts for every instrument. In between, the trainer
   (``run_trainer``, one instance) dispatches one ``train-requested`` event per instrument,
   consumes its share (here: all), trains, records and publishes every pointer move: the
   figure the aim is about (≤ 10 s for 1,000 instruments on 2 cores).

Usage: ``uv run python bench/bench_trainer_instruments.py [--instruments 1000] [--days 60]
[--origins 20] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from metalcast import stack
from metalcast.stack import world
from metalcast_core import (
    BATCH_LOADED,
    MODELS_TRAINED,
    BatchLoaded,
    Instrument,
    ModelConfig,
    create_pool,
    make_consumer,
    make_producer,
    make_s3_client,
    upsert_instruments,
)
from metalcast_sink.bars import BAR_COLUMNS
from metalcast_trainer.bootstrap import run_trainer
from metalcast_trainer.config import TrainerSection, TrainerSettings
from metalcast_trainer.instruments import LazyProcessPool
from metalcast_trainer.runner import TrainingRunner

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

# The bars table's columns, raw payload included (None here).
COLUMNS = BAR_COLUMNS


def _bars(symbols: list[str], days: list[datetime], rng: random.Random) -> list[tuple[object, ...]]:
    now = datetime.now(UTC)
    rows: list[tuple[object, ...]] = []
    for symbol in symbols:
        price = 50.0 + 100.0 * rng.random()
        for day in days:
            price *= math.exp(rng.gauss(0, 0.01))
            p = Decimal(f"{price:.4f}")
            rows.append(
                (symbol, "alphavantage", day.date(), p, p, p, p, Decimal(1000), "USD", now, None)
            )
    return rows


class _Skip(Exception):
    """``--service-only``: the runner's figures are skipped."""


async def _run(runner: TrainingRunner, symbols: list[str]) -> tuple[float, dict[str, float]]:
    runner.want(symbols)
    started = time.perf_counter()
    report = await runner.run("batch-loaded")
    took = time.perf_counter() - started
    counts = {
        "promoted": len(report.promoted),
        "versions": len(report.versions),
        "unchanged": len(report.unchanged),
        "failed": len(report.failed),
        "origins_fitted": int(report.timings.get("origins_fitted", 0)),
        "origins_reused": int(report.timings.get("origins_reused", 0)),
        **{k: round(v, 1) for k, v in report.timings.items() if k.endswith("_s")},
    }
    return took, counts


async def _through_kafka(
    settings: TrainerSettings, symbols: list[str], day: datetime
) -> tuple[float, list[int]]:
    """Seconds from publishing a batch-loaded event naming ``symbols`` to the
    models.trained.v1 events that account for all of them (a running trainer service), and
    the ids of the runs that trained them."""
    kafka = settings.kafka
    trained = make_consumer(kafka, [kafka.topic_name(MODELS_TRAINED)], group_id=None)
    await trained.start()
    try:
        sent_at = datetime.now(UTC)
        producer = make_producer(kafka)
        await producer.start()
        try:
            event = BatchLoaded(
                symbols=symbols,
                first_hour=day,
                last_hour=day,
                rows_inserted=len(symbols),
                ticks_received=len(symbols),
                table="prices.bars",
            )
            started = time.perf_counter()
            await producer.send_and_wait(
                kafka.topic_name(BATCH_LOADED),
                BATCH_LOADED.encode(event),
                key=str(event.batch_id).encode(),
            )
        finally:
            await producer.stop()
        waiting = set(symbols)
        runs: list[int] = []
        while waiting:
            fetched = await trained.getmany(timeout_ms=60_000)
            if not fetched:
                raise TimeoutError(f"{len(waiting)} instruments not trained after 60 s")
            for records in fetched.values():
                for record in records:
                    done = MODELS_TRAINED.decode(record.value)
                    if done.finished_at < sent_at:  # an earlier load's run
                        continue
                    runs.append(done.run_id)
                    waiting -= set(done.versions) | set(done.failed)
                    waiting -= set(done.decisions)  # unchanged ones are decided too
        return time.perf_counter() - started, runs
    finally:
        await trained.stop()


async def main(
    n: int,
    n_days: int,
    origins: int,
    workers: int,
    candidates: tuple[str, ...],
    service_only: bool = False,
) -> None:
    load0 = os.getloadavg()
    stack.up()
    async with world.isolated_world(stack.env(), label="bench_inst") as w:
        work = Path(tempfile.mkdtemp(prefix="bench-inst-"))
        section = TrainerSection.model_validate(
            {
                "candidates": list(candidates),
                "backtest_origins": origins,
                "work_dir": work,
                "retention_hours": 0,
                "workers": workers,
                "metrics_port": 0,
            }
        )
        settings = TrainerSettings(postgres=w.postgres, kafka=w.kafka, s3=w.s3, trainer=section)
        symbols = [f"EQ{i:04d}" for i in range(n)]
        rng = random.Random(7)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        days = [today - timedelta(days=n_days - i) for i in range(n_days)]
        added: list[datetime] = []
        conn = await asyncpg.connect(w.postgres.url)
        try:
            await upsert_instruments(
                conn,
                [
                    Instrument(
                        symbol=s,
                        kind="equity",
                        cadence="daily",
                        providers={"alphavantage": s},
                        model=ModelConfig(x_size=20, candidates=candidates),
                    )
                    for s in symbols
                ],
            )
            await conn.copy_records_to_table(
                "bars", schema_name="prices", records=_bars(symbols, days, rng), columns=COLUMNS
            )
            await conn.execute("ANALYZE prices.bars")
        finally:
            await conn.close()
        print(
            f"{n} daily instruments x {n_days} days, x_size 20, {' + '.join(candidates)}, "
            f"{origins} backtest origins, {workers} pool workers; {os.cpu_count()} CPUs, "
            f"load {load0[0]:.2f}",
            flush=True,
        )

        async def new_bar() -> datetime:
            day = today + timedelta(days=len(added))
            added.append(day)
            conn = await asyncpg.connect(w.postgres.url)
            try:
                await conn.copy_records_to_table(
                    "bars",
                    schema_name="prices",
                    records=_bars(symbols, [day], rng),
                    columns=COLUMNS,
                )
            finally:
                await conn.close()
            return day

        pool = await create_pool(w.postgres.model_copy(update={"pool_max_size": 10}))
        lazy = LazyProcessPool(workers) if workers else None
        client = make_s3_client(w.s3)
        try:
            if service_only:
                raise _Skip
            if lazy is not None:
                await lazy.get()  # workers started and warm before the clock
            runner = TrainingRunner(settings, pool, client, lazy)
            await asyncio.to_thread(runner.warm_up)
            took, counts = await _run(runner, symbols)
            print(
                f"runner, first run (from scratch)  {took:8.2f} s  {n / took:7.1f} "
                f"instruments/s  {counts}",
                flush=True,
            )
            for _ in range(2):
                await new_bar()
                took, counts = await _run(runner, symbols)
                print(
                    f"runner, one load (new bar each)   {took:8.2f} s  {n / took:7.1f} "
                    f"instruments/s  {counts}",
                    flush=True,
                )
            if lazy is not None:
                threads = TrainingRunner(settings, pool, client, None)
                await new_bar()
                took, counts = await _run(threads, symbols)
                print(
                    f"runner, one load, no pool         {took:8.2f} s  {n / took:7.1f} "
                    f"instruments/s  {counts}",
                    flush=True,
                )
        except _Skip:
            pass
        finally:
            await pool.close()
            if lazy is not None:
                await asyncio.to_thread(lazy.shutdown)

        stop = asyncio.Event()
        service = asyncio.create_task(run_trainer(settings, stop))
        try:
            await asyncio.sleep(8)  # joined both consumer groups; its pool started and warm
            for label in ("load 1", "load 2"):
                day = await new_bar()
                took, runs = await _through_kafka(settings, symbols, day)
                conn = await asyncpg.connect(w.postgres.url)
                try:
                    inside = await conn.fetchval(
                        "SELECT sum((timings->>'total_s')::float8) FROM ml.training_runs "
                        "WHERE id = ANY($1::bigint[])",
                        runs,
                    )
                finally:
                    await conn.close()
                print(
                    f"service through Kafka, {label}  {took:8.2f} s  {n / took:7.1f} "
                    "instruments/s  (batch-loaded published -> every instrument in "
                    f"models.trained.v1; {len(runs)} run(s) taking {inside:.2f} s of it)",
                    flush=True,
                )
        finally:
            stop.set()
            await service
        print(f"load average at end {os.getloadavg()[0]:.2f}")
        # The world's buckets are removed with it; empty the models bucket first, in bulk.
        objects: list[ObjectIdentifierTypeDef] = [
            {"Key": obj["Key"]}
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=w.s3.models_bucket)
            for obj in page.get("Contents", [])
        ]
        for i in range(0, len(objects), 1000):
            client.delete_objects(
                Bucket=w.s3.models_bucket, Delete={"Objects": objects[i : i + 1000]}
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--instruments", type=int, default=1000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--origins", type=int, default=20)
    parser.add_argument(
        "--workers", type=int, default=2, help="process pool size; 0: backtests in threads"
    )
    parser.add_argument("--candidates", default="naive,drift", help="comma-separated families")
    parser.add_argument(
        "--service-only", action="store_true", help="only the service through Kafka (4.)"
    )
    args = parser.parse_args()
    families = tuple(args.candidates.split(","))
    asyncio.run(
        main(
            args.instruments,
            args.days,
            args.origins,
            args.workers,
            families,
            args.service_only,
        )
    )

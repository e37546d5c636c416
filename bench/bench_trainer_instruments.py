"""A model per instrument, many instruments: what one load costs the trainer.

N daily instruments (default 1,000) are catalogued with a model (``x_size`` 20, candidates
naive and drift) and seeded with D days of bars (a seeded random walk). Then, in one process
on the local stack, with the trainer's real runner (backtests in its process pool, one BLAS
thread per worker; database, S3 uploads, registry as in production):

1. first run: every instrument backtested from scratch, fitted, uploaded, promoted;
2. one load: one new bar per instrument, then the run a batch-loaded event touching all of
   them triggers (cached backtest forecasts reused, one new origin per candidate): the figure
   the aim is about (≤ 10 s for 1,000 instruments on 2 cores);
3. the same load with the pool off (backtests and fits in threads), for comparison
   (``--workers 0``: every run in threads).

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
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg

from metalcast import stack
from metalcast_core import (
    Instrument,
    KafkaSettings,
    ModelConfig,
    PostgresSettings,
    S3Settings,
    create_pool,
    ensure_buckets,
    make_s3_client,
    migrate,
    upsert_instruments,
)
from metalcast_trainer.config import TrainerSection, TrainerSettings
from metalcast_trainer.instruments import LazyProcessPool
from metalcast_trainer.runner import TrainingRunner

COLUMNS = (
    "symbol",
    "source",
    "date",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "currency",
    "fetched_at",
)


def _bars(symbols: list[str], days: list[datetime], rng: random.Random) -> list[tuple[object, ...]]:
    now = datetime.now(UTC)
    rows: list[tuple[object, ...]] = []
    for symbol in symbols:
        price = 50.0 + 100.0 * rng.random()
        for day in days:
            price *= math.exp(rng.gauss(0, 0.01))
            p = Decimal(f"{price:.4f}")
            rows.append((symbol, "alphavantage", day.date(), p, p, p, p, Decimal(1000), "USD", now))
    return rows


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


async def main(
    n: int, n_days: int, origins: int, workers: int, candidates: tuple[str, ...]
) -> None:
    load0 = os.getloadavg()
    stack.up()
    env = stack.env()
    base = PostgresSettings(url=env["METALCAST_POSTGRES__URL"])
    db = f"bench_inst_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base.url)
    await admin.execute(f'CREATE DATABASE "{db}"')
    pg = base.with_database(db)
    s3 = S3Settings(
        endpoint_url=env["METALCAST_S3__ENDPOINT_URL"],
        access_key_id=env["METALCAST_S3__ACCESS_KEY_ID"],
        secret_access_key=env["METALCAST_S3__SECRET_ACCESS_KEY"],
        models_bucket=f"bench-{uuid.uuid4().hex[:6]}-models",
        backups_bucket=f"bench-{uuid.uuid4().hex[:6]}-backups",
    )
    client = make_s3_client(s3)
    ensure_buckets(client, s3)
    kafka = KafkaSettings(bootstrap_servers=env["METALCAST_KAFKA__BOOTSTRAP_SERVERS"])
    work = Path(tempfile.mkdtemp(prefix="bench-inst-"))
    try:
        section = TrainerSection.model_validate(
            {
                "candidates": list(candidates),
                "backtest_origins": origins,
                "work_dir": work,
                "retention_hours": 0,
                "workers": 2,
            }
        )
        settings = TrainerSettings(postgres=pg, kafka=kafka, s3=s3, trainer=section)
        await migrate(pg, settings.migrations_dir)
        symbols = [f"EQ{i:04d}" for i in range(n)]
        rng = random.Random(7)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        days = [today - timedelta(days=n_days - i) for i in range(n_days)]
        conn = await asyncpg.connect(pg.url)
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
            f"{origins} backtest origins; {os.cpu_count()} CPUs, load {load0[0]:.2f}",
            flush=True,
        )

        pool = await create_pool(pg.model_copy(update={"pool_max_size": 10}))
        lazy = LazyProcessPool(workers) if workers else None
        try:
            if lazy is not None:
                await lazy.get()  # workers started and warm before the clock
            runner = TrainingRunner(settings, pool, client, lazy)
            await asyncio.to_thread(runner.warm_up)
            took, counts = await _run(runner, symbols)
            print(
                f"first run (from scratch)  {took:8.2f} s  {n / took:7.1f} instruments/s  {counts}",
                flush=True,
            )

            async def new_bar() -> None:
                conn = await asyncpg.connect(pg.url)
                try:
                    day = today + timedelta(days=len(loads))
                    await conn.copy_records_to_table(
                        "bars",
                        schema_name="prices",
                        records=_bars(symbols, [day], rng),
                        columns=COLUMNS,
                    )
                finally:
                    await conn.close()

            loads: list[float] = []
            for _ in range(2):
                await new_bar()
                took, counts = await _run(runner, symbols)
                loads.append(took)
                print(
                    f"one load (new bar each)   {took:8.2f} s  {n / took:7.1f} instruments/s  "
                    f"{counts}",
                    flush=True,
                )
            if lazy is not None:
                threads = TrainingRunner(settings, pool, client, None)
                await new_bar()
                loads.append(0)
                took, counts = await _run(threads, symbols)
                print(
                    f"one load, no process pool {took:8.2f} s  {n / took:7.1f} instruments/s  "
                    f"{counts}",
                    flush=True,
                )
        finally:
            await pool.close()
            if lazy is not None:
                await asyncio.to_thread(lazy.shutdown)
        print(f"load average at end {os.getloadavg()[0]:.2f}")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
        for bucket in (s3.models_bucket, s3.backups_bucket):
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    client.delete_object(Bucket=bucket, Key=obj["Key"])
            client.delete_bucket(Bucket=bucket)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--instruments", type=int, default=1000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--origins", type=int, default=20)
    parser.add_argument(
        "--workers", type=int, default=2, help="process pool size; 0: backtests in threads"
    )
    parser.add_argument("--candidates", default="naive,drift", help="comma-separated families")
    args = parser.parse_args()
    families = tuple(args.candidates.split(","))
    asyncio.run(main(args.instruments, args.days, args.origins, args.workers, families))

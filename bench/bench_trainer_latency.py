"""Latency from ``pipeline.batch-loaded.v1`` published to all four new versions recorded,
with a warm trainer (forecasting stack imported, one fit done), on the local stack.

Baseline in the same run: the four fits alone, in-process, no I/O (``Model.train`` on the same
window), so the figure shows what the event path, S3 uploads and bookkeeping add.

Usage: ``uv run python bench/bench_trainer_latency.py [--events 10]``. Aim (issue 3): ≤ 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg

from metalcast import stack
from metalcast_core import (
    BATCH_LOADED,
    METALS,
    BatchLoaded,
    KafkaSettings,
    PostgresSettings,
    S3Settings,
    ensure_buckets,
    make_producer,
    make_s3_client,
    migrate,
)
from metalcast_ingestor import bootstrap as ingestor
from metalcast_ingestor.config import IngestorSettings
from metalcast_models import FrameTrainingData, Model, PostgresTrainingData
from metalcast_sink.bootstrap import run_sink
from metalcast_sink.config import SinkSettings
from metalcast_trainer.bootstrap import run_trainer
from metalcast_trainer.config import TrainerSection, TrainerSettings

TICKERS = [m.ticker for m in METALS]
FAST = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


async def _finished(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM ml.training_runs WHERE status IN ('succeeded', 'partial')"
            )
        )
    finally:
        await conn.close()


async def main(events: int) -> None:
    stack.up()
    env = stack.env()
    base = env["METALCAST_POSTGRES__URL"]
    db = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base)
    await admin.execute(f'CREATE DATABASE "{db}"')
    pg = PostgresSettings(url=base).with_database(db)
    kafka = KafkaSettings(
        bootstrap_servers=env["METALCAST_KAFKA__BOOTSTRAP_SERVERS"],
        topic_prefix=f"bench{uuid.uuid4().hex[:6]}.",
    )
    s3 = S3Settings(models_bucket=f"bench-models-{uuid.uuid4().hex[:8]}")
    try:
        await migrate(pg, IngestorSettings().migrations_dir)
        await asyncio.to_thread(ensure_buckets, make_s3_client(s3), s3)
        end = ingestor.current_hour() + timedelta(hours=1)
        await ingestor.backfill(
            IngestorSettings(postgres=pg, kafka=kafka), "simulated", end - timedelta(hours=48), end
        )
        await run_sink(
            SinkSettings(postgres=pg, kafka=kafka), until_idle=True, consumer_options=FAST
        )

        # Baseline: the four fits alone.
        frame = await PostgresTrainingData(pg.url).fetch(TICKERS, 12)
        Model(TICKERS, 12, 1, data_source=FrameTrainingData(frame)).train()  # warm
        fits = []
        for _ in range(events):
            t = time.perf_counter()
            Model(TICKERS, 12, 1, data_source=FrameTrainingData(frame)).train()
            fits.append(time.perf_counter() - t)

        settings = TrainerSettings(
            postgres=pg,
            kafka=kafka,
            s3=s3,
            trainer=TrainerSection(
                group_id=f"bench-{uuid.uuid4().hex[:6]}",
                work_dir=Path(tempfile.mkdtemp(prefix="bench-trainer-")),
            ),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(run_trainer(settings, stop, consumer_options=FAST))
        producer = make_producer(kafka)
        await producer.start()
        latencies = []
        try:
            # The batch-loaded events of the backfill train first; wait for that run (warm-up).
            while await _finished(pg.url) < 1:  # noqa: ASYNC110 - polling the database
                await asyncio.sleep(0.05)
            for i in range(events):
                done = await _finished(pg.url)
                event = BatchLoaded(
                    symbols=["XAU"],
                    first_hour=end,
                    last_hour=end,
                    rows_inserted=1,
                    ticks_received=1,
                )
                t = time.perf_counter()
                await producer.send_and_wait(
                    kafka.topic_name(BATCH_LOADED), BATCH_LOADED.encode(event)
                )
                while await _finished(pg.url) <= done:  # noqa: ASYNC110 - polling the database
                    await asyncio.sleep(0.01)
                latencies.append(time.perf_counter() - t)
                print(f"event {i + 1}: {latencies[-1]:.3f} s")
        finally:
            await producer.stop()
            stop.set()
            await task

        p50 = statistics.median(latencies)
        print(f"four fits alone (baseline)      p50 {statistics.median(fits):.3f} s")
        print(
            f"event -> 4 versions recorded    p50 {p50:.3f} s, max {max(latencies):.3f} s "
            f"(target <= 2 s)"
        )
        print(f"ratio event path / fits alone   {p50 / statistics.median(fits):.2f}")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10)
    asyncio.run(main(parser.parse_args().events))

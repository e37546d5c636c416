"""End-to-end backfill throughput: simulated ticks → ingestor → Kafka → sink → PostgreSQL.

Prints, from one run on the local stack:
- end to end: N ticks from the first publish to the last row committed, the ingestor (this
  process) and the sink (``python -m metalcast_sink``, a second process) running together;
- the sink's write stage alone (its time inside the database transactions), against
- the sink alone draining the whole topic into a fresh database (a backlog, as after an
  outage or a backfill published while the sink was down), and its write stage;
- a raw asyncpg COPY of the same N rows into a table shaped like ``prices.ticks`` (the same
  types and indexes), measured in the same run: the baseline.

Usage: ``uv run python bench/bench_ingest.py [--ticks 1000000]`` (starts the stack if needed).
Targets (issue 2): ≥ 50,000 ticks/s end to end; write stage ≥ 0.5 x raw COPY.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from metalcast import stack
from metalcast_core import (
    METAL_SYMBOLS,
    KafkaSettings,
    PostgresSettings,
    PriceTick,
    ensure_topics,
    migrate,
)
from metalcast_ingestor import bootstrap as ingestor
from metalcast_ingestor.config import IngestorSettings
from metalcast_ingestor.sources import SimulatedSource
from metalcast_sink.bootstrap import run_sink
from metalcast_sink.config import SinkSection, SinkSettings
from metalcast_sink.writer import copy_row


async def _count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM prices.ticks"))
    finally:
        await conn.close()


async def _raw_copy(url: str, ticks: list[PriceTick]) -> float:
    # The same rows the sink copies (prices as decimals), built before the clock starts.
    rows = [copy_row(t) for t in ticks]
    conn = await asyncpg.connect(url)
    try:
        # The same columns, types, defaults, constraints and indexes as prices.ticks.
        await conn.execute("CREATE TABLE bench_raw (LIKE prices.ticks INCLUDING ALL)")
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "bench_raw",
            records=rows,
            columns=[
                "symbol",
                "source",
                "instrument",
                "observed_at",
                "price",
                "currency",
                "fetched_at",
                "raw",
            ],
        )
        return time.perf_counter() - started
    finally:
        await conn.close()


async def main(n_ticks: int) -> None:
    stack.up()
    env = stack.env()
    base = PostgresSettings(url=env["METALCAST_POSTGRES__URL"])
    db = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base.url)
    await admin.execute(f'CREATE DATABASE "{db}"')
    pg = base.with_database(db)
    kafka = KafkaSettings(
        bootstrap_servers=env["METALCAST_KAFKA__BOOTSTRAP_SERVERS"],
        topic_prefix=f"bench{uuid.uuid4().hex[:6]}.",
    )
    try:
        settings = IngestorSettings(postgres=pg, kafka=kafka)
        await migrate(pg, settings.migrations_dir)
        await ensure_topics(kafka)
        hours = n_ticks // len(METAL_SYMBOLS)
        end = datetime(2026, 1, 1, tzinfo=UTC)
        start = end - timedelta(hours=hours)

        sink_env = {
            **os.environ,
            "METALCAST_POSTGRES__URL": pg.url,
            "METALCAST_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "METALCAST_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
            "METALCAST_LOG_LEVEL": "WARNING",
        }
        sink = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, not awaited
            [sys.executable, "-m", "metalcast_sink"], env=sink_env, stdout=subprocess.PIPE
        )
        await asyncio.sleep(3)  # let the sink join its group before the clock starts

        started = time.perf_counter()
        stats = await ingestor.backfill(settings, "simulated", start, end)
        published_s = time.perf_counter() - started
        total = stats["published"]
        while (landed := await _count(pg.url)) < total:
            if sink.poll() is not None:
                raise RuntimeError(f"the sink exited early with {sink.returncode}")
            await asyncio.sleep(0.05)
        e2e_s = time.perf_counter() - started
        sink.send_signal(signal.SIGTERM)
        out, _ = sink.communicate(timeout=60)
        sink_stats = json.loads(out.decode().strip().splitlines()[-1])

        # Phase 2: the sink alone draining the whole topic (a backlog) into a fresh database.
        drain_db = f"{db}_drain"
        await admin.execute(f'CREATE DATABASE "{drain_db}"')
        drain_pg = base.with_database(drain_db)
        await migrate(drain_pg, settings.migrations_dir)
        started = time.perf_counter()
        drained = await run_sink(
            SinkSettings(
                postgres=drain_pg,
                kafka=kafka,
                sink=SinkSection(group_id=f"drain-{uuid.uuid4().hex[:6]}"),
            ),
            until_idle=True,
            consumer_options={"session_timeout_ms": 6000, "heartbeat_interval_ms": 500},
        )
        drain_s = time.perf_counter() - started
        assert drained.rows_inserted == total, drained

        source = SimulatedSource(seed=settings.ingest.simulated_seed)
        ticks = [
            t
            async for chunk in source.history(list(METAL_SYMBOLS), start, end)
            for t in chunk
            if isinstance(t, PriceTick)
        ]
        copy_s = await _raw_copy(pg.url, ticks)

        write_rate = total / sink_stats["write_s"]
        copy_rate = len(ticks) / copy_s
        sink_s, batches = sink_stats["write_s"], sink_stats["batches"]
        drain_write = total / drained.write_s
        report = [
            ("ticks", f"{total:,}", f"{hours:,} h x {len(METAL_SYMBOLS)} metals"),
            ("rows landed", f"{landed:,}", ""),
            ("ingestor publish", f"{total / published_s:,.0f} ticks/s", f"{published_s:.1f} s"),
            (
                "end to end (both running)",
                f"{total / e2e_s:,.0f} ticks/s",
                f"{e2e_s:.1f} s; target >= 50,000 ticks/s",
            ),
            (
                "sink write stage",
                f"{write_rate:,.0f} ticks/s",
                f"{sink_s:.1f} s, {batches} batches",
            ),
            ("sink alone, draining", f"{total / drain_s:,.0f} ticks/s", f"{drain_s:.1f} s"),
            (
                "  its write stage",
                f"{drain_write:,.0f} ticks/s",
                f"{drained.write_s:.1f} s, {drained.batches} batches",
            ),
            ("raw asyncpg COPY baseline", f"{copy_rate:,.0f} rows/s", f"{copy_s:.1f} s"),
            ("write stage / raw COPY", f"{write_rate / copy_rate:.2f}", "both running"),
            ("  draining / raw COPY", f"{drain_write / copy_rate:.2f}", "target >= 0.5"),
        ]
        for label, value, note in report:
            print(f"{label:<27}{value:>18}  {note}")
    finally:
        for name in (db, f"{db}_drain"):
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args().ticks))

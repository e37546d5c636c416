"""Ingest-path throughput: simulated ticks → ingestor → Kafka → sink → PostgreSQL.

Prints, from one run on the local stack (N ticks, one per metal per hour, ~200-byte JSON):

1. end to end: from the ingestor's first publish to the last row committed, the ingestor
   (this process) and the sink (``python -m metalcast_sink``, a second process) running
   together, the sink started and in its group before the clock starts;
2. the sink alone draining the whole topic (a backlog, as after an outage or a backfill
   published while it was down) into a fresh database: ``run_sink(until_idle=True)`` in this
   process, from the call to its return (the group join included);
3. for both, the sink's own stages: *decode* (records into rows and dead letters: msgspec,
   business checks, columns, hourly picks) and *write* (wall time inside its database
   transactions: staging COPY, insert, hourly rows, outbox; with the decode of the next batch
   interleaved, as it runs);
4. the baseline: a raw asyncpg ``copy_records_to_table`` of the same N rows (built before the
   clock starts, prices as decimals) into a table with the columns, types, constraints and
   indexes of ``prices.ticks``, in the same run; the write stages as a share of it, and the
   write stage alone: the topic decoded first into batches of the drain's average size,
   then written back to back with the sink's ``write_batch`` into a fresh database;
5. two sink processes in one consumer group on a 4-partition topic holding the same ticks
   (two metals' partitions each), into a fresh database, each with ``--until-idle``: each
   one's rows over its time from launch to exit (start-up and the group's rebalance
   included), both together, and one process alone the same way.

Conditions: the load average at start and end and the CPU count are printed; the machine's
other work shares the CPUs with Kafka, PostgreSQL, the ingestor and the sink.

Usage: ``uv run python bench/bench_ingest.py [--ticks 1000000] [--no-pair]`` (starts the stack
if needed). Aims (issue 13): the sink draining ≥ 80,000 ticks/s; end to end ≥ 50,000 ticks/s;
the write stage ≥ 0.5 x raw COPY.
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from metalcast import stack
from metalcast.stack.world import (
    World,
    create_database,
    create_topics,
    delete_topics,
    drop_database,
    isolated_world,
)
from metalcast_core import (
    METAL_SYMBOLS,
    TICKS,
    KafkaSettings,
    PostgresSettings,
    PriceTick,
    make_consumer,
)
from metalcast_ingestor import bootstrap as ingestor
from metalcast_ingestor.config import IngestorSettings
from metalcast_ingestor.sources import SimulatedSource
from metalcast_sink.bootstrap import run_sink
from metalcast_sink.config import SinkSection, SinkSettings
from metalcast_sink.decoding import decode_values
from metalcast_sink.writer import TICK_COLUMNS, TickRows, write_batch

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


def _decimal_row(tick: PriceTick) -> tuple[object, ...]:
    """A tick as a row of ``prices.ticks`` for binary COPY (price as the decimal it was)."""
    return (
        tick.symbol,
        tick.source,
        tick.instrument,
        tick.observed_at,
        Decimal(repr(tick.price)),
        tick.currency,
        tick.fetched_at,
        None if tick.raw is None else json.dumps(tick.raw),
    )


async def _count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM prices.ticks"))
    finally:
        await conn.close()


async def _raw_copy(url: str, ticks: list[PriceTick]) -> float:
    rows = [_decimal_row(t) for t in ticks]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE bench_raw (LIKE prices.ticks INCLUDING ALL)")
        started = time.perf_counter()
        await conn.copy_records_to_table("bench_raw", records=rows, columns=TICK_COLUMNS)
        return time.perf_counter() - started
    finally:
        await conn.close()


async def _write_alone(kafka: KafkaSettings, pg: PostgresSettings, batch: int) -> float:
    """The write stage by itself: the topic decoded into batches of ``batch`` ticks first,
    then written one after another with the sink's ``write_batch``; returns the seconds."""
    consumer = make_consumer(
        kafka, [kafka.topic_name(TICKS)], None, max_partition_fetch_bytes=4 << 20
    )
    await consumer.start()
    batches = []
    try:
        while fetched := await consumer.getmany(timeout_ms=2000, max_records=batch):
            values = [r.value for part in fetched.values() for r in part]
            batches.append(TickRows.of(decode_values(values).ticks))
    finally:
        await consumer.stop()
    conn = await asyncpg.connect(pg.url)
    try:
        started = time.perf_counter()
        for rows in batches:
            await write_batch(conn, rows)
        return time.perf_counter() - started
    finally:
        await conn.close()


def _sink_env(pg: PostgresSettings, kafka: KafkaSettings, group: str) -> dict[str, str]:
    return {
        **os.environ,
        "METALCAST_POSTGRES__URL": pg.url,
        "METALCAST_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "METALCAST_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "METALCAST_KAFKA__TICKS_PARTITIONS": str(kafka.ticks_partitions),
        "METALCAST_SINK__GROUP_ID": group,
        "METALCAST_LOG_LEVEL": "WARNING",
    }


def _last_json(out: bytes) -> dict[str, Any]:
    stats: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return stats


@dataclass
class _Run:
    seconds: float
    stats: dict[str, Any]


async def _sink_processes(
    n: int, pg: PostgresSettings, kafka: KafkaSettings
) -> tuple[list[_Run], float]:
    """``n`` sink processes in one group, ``--until-idle``: each one's time and counters."""
    env = _sink_env(pg, kafka, f"pair-{uuid.uuid4().hex[:6]}")
    started = time.perf_counter()
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 - children polled below, not awaited
            [sys.executable, "-m", "metalcast_sink", "--until-idle"],
            env=env,
            stdout=subprocess.PIPE,
        )
        for _ in range(n)
    ]
    ended: dict[int, float] = {}
    while len(ended) < n:
        for i, proc in enumerate(procs):
            if i not in ended and proc.poll() is not None:
                ended[i] = time.perf_counter() - started
        await asyncio.sleep(0.05)
    runs = []
    for i, proc in enumerate(procs):
        out, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"sink process {i} exited with {proc.returncode}")
        runs.append(_Run(ended[i], _last_json(out)))
    return runs, max(ended.values())


async def main(n_ticks: int, pair: bool) -> None:
    load_start = os.getloadavg()
    stack.up()
    async with isolated_world(label="bench_ingest") as own:
        await _measure(own, n_ticks, pair)
    load_end = os.getloadavg()
    print(
        f"conditions: {os.cpu_count()} CPUs; load average (1, 5, 15 min) "
        f"{' '.join(f'{x:.2f}' for x in load_start)} at start, "
        f"{' '.join(f'{x:.2f}' for x in load_end)} at end"
    )


async def _measure(own: World, n_ticks: int, pair: bool) -> None:
    pg, kafka = own.postgres, own.kafka
    scratch: list[str] = []  # more databases and topics of this world's, removed at the end
    scratch_topics: list[KafkaSettings] = []

    async def database(suffix: str) -> PostgresSettings:
        scratch.append(f"{own.database}_{suffix}")
        return await create_database(pg, scratch[-1])

    report: list[tuple[str, str, str]] = []

    def say() -> None:  # print what is measured so far, as it comes
        for label, value, note in report:
            print(f"{label:<27}{value:>18}  {note}", flush=True)
        report.clear()

    try:
        settings = IngestorSettings(postgres=pg, kafka=kafka)
        hours = n_ticks // len(METAL_SYMBOLS)
        end = datetime(2026, 1, 1, tzinfo=UTC)
        start = end - timedelta(hours=hours)

        # 1. End to end.
        sink = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, not awaited
            [sys.executable, "-m", "metalcast_sink"],
            env=_sink_env(pg, kafka, f"e2e-{uuid.uuid4().hex[:6]}"),
            stdout=subprocess.PIPE,
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
        e2e = _last_json(out)

        # 2. The sink alone, draining the whole topic into a fresh database.
        drain_pg = await database("drain")
        cpu = time.process_time()
        started = time.perf_counter()
        drained = await run_sink(
            SinkSettings(
                postgres=drain_pg,
                kafka=kafka,
                sink=SinkSection(group_id=f"drain-{uuid.uuid4().hex[:6]}"),
            ),
            until_idle=True,
            consumer_options=FAST_GROUP,
        )
        drain_s = time.perf_counter() - started
        drain_cpu = time.process_time() - cpu
        assert drained.rows_inserted == total, drained

        # 4. The raw COPY baseline.
        source = SimulatedSource(seed=settings.ingest.simulated_seed)
        ticks = [
            t
            async for chunk in source.history(list(METAL_SYMBOLS), start, end)
            for t in chunk
            if isinstance(t, PriceTick)
        ]
        copy_rate = len(ticks) / await _raw_copy(pg.url, ticks)
        del ticks
        write_pg = await database("write")
        alone_s = await _write_alone(kafka, write_pg, max(1, total // drained.batches))

        e2e_write = total / e2e["write_s"]
        drain_write = total / drained.write_s
        report += [
            ("ticks", f"{total:,}", f"{hours:,} h x {len(METAL_SYMBOLS)} metals"),
            ("rows landed", f"{landed:,}", ""),
            ("ingestor publish", f"{total / published_s:,.0f} ticks/s", f"{published_s:.1f} s"),
            (
                "end to end (both running)",
                f"{total / e2e_s:,.0f} ticks/s",
                f"{e2e_s:.1f} s; aim >= 50,000 ticks/s",
            ),
            (
                "  sink write stage",
                f"{e2e_write:,.0f} ticks/s",
                f"{e2e['write_s']:.1f} s in {e2e['batches']} batches; "
                f"decode {e2e['decode_s']:.1f} s",
            ),
            (
                "sink alone, draining",
                f"{total / drain_s:,.0f} ticks/s",
                f"{drain_s:.1f} s, {drain_cpu:.1f} s of its CPU; aim >= 80,000 ticks/s",
            ),
            (
                "  its write stage",
                f"{drain_write:,.0f} ticks/s",
                f"{drained.write_s:.1f} s in {drained.batches} batches; "
                f"decode {drained.decode_s:.1f} s",
            ),
            (
                "write stage alone",
                f"{total / alone_s:,.0f} ticks/s",
                f"{alone_s:.1f} s: the drain's batch size, decoded first, written back to back",
            ),
            ("raw asyncpg COPY baseline", f"{copy_rate:,.0f} rows/s", "same rows, same run"),
            ("write stage / raw COPY", f"{e2e_write / copy_rate:.2f}", "end to end"),
            ("  draining / raw COPY", f"{drain_write / copy_rate:.2f}", "aim >= 0.5"),
            ("  alone / raw COPY", f"{total / alone_s / copy_rate:.2f}", "aim >= 0.5"),
        ]

        say()

        # 5. Two sink processes in one group, a 4-partition topic holding the same ticks.
        if pair:
            four = await create_topics(
                kafka.model_copy(update={"ticks_partitions": 4}), f"{kafka.topic_prefix}four."
            )
            scratch_topics.append(four)
            await ingestor.backfill(
                IngestorSettings(postgres=pg, kafka=four), "simulated", start, end
            )
            pair_pg, one_pg = await database("pair"), await database("one")
            runs, both_s = await _sink_processes(2, pair_pg, four)
            assert sum(r.stats["rows_inserted"] for r in runs) == total, runs
            (one,), one_s = await _sink_processes(1, one_pg, four)
            for i, run in enumerate(runs):
                rows = run.stats["rows_inserted"]
                report.append(
                    (
                        f"two sinks: sink {i + 1}",
                        f"{rows / run.seconds:,.0f} ticks/s",
                        f"{rows:,} rows in {run.seconds:.1f} s (launch to exit); "
                        f"write {run.stats['write_s']:.1f} s, decode {run.stats['decode_s']:.1f} s",
                    )
                )
            report += [
                ("two sinks together", f"{total / both_s:,.0f} ticks/s", f"{both_s:.1f} s"),
                (
                    "one sink, same way",
                    f"{total / one_s:,.0f} ticks/s",
                    f"{one_s:.1f} s; write {one.stats['write_s']:.1f} s, "
                    f"decode {one.stats['decode_s']:.1f} s",
                ),
            ]
        say()
    finally:
        for name in scratch:
            await drop_database(pg, name)
        for topics in scratch_topics:
            await delete_topics(topics)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--no-pair", dest="pair", action="store_false")
    args = parser.parse_args()
    asyncio.run(main(args.ticks, args.pair))

"""Macro backfill throughput: the whole history of the five FRED series (every weekday since
1955, one in ten values revised once: a second vintage) through the real pull and the sink's
macro loop into ``macro.observations``, in one run.

1. pull: ``FredSource`` (on FRED-shaped JSON answers served by an ``httpx.MockTransport``, one
   page per series as ``--full`` asks for) and ``MacroPublisher`` into ``macro.observations.v1``;
2. drain: ``run_macro_sink(until_idle=True)`` (what ``metalcast sink macro`` runs) into a
   fresh, migrated database;
3. the same again (a replay of the topic): nothing is written twice.

Usage: ``uv run python bench/bench_macro.py [--since 1955]`` (starts the stack if needed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx

from metalcast import stack
from metalcast.stack import world
from metalcast_core import make_producer
from metalcast_ingestor.publisher import MacroPublisher
from metalcast_ingestor.runner import fetch_macro
from metalcast_ingestor.sources import FredSource, RetryPolicy
from metalcast_sink.bootstrap import run_macro_sink
from metalcast_sink.config import SinkSection, SinkSettings

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
SERIES = ("DGS10", "DFII10", "T10YIE", "DTWEXBGS", "DFF")


def fred_answer(series: str, since: int, end: date) -> dict[str, Any]:
    rng = random.Random(series)
    rows = []
    day, value = date(since, 1, 3), 2.0 + 3 * rng.random()
    while day <= end:
        if day.weekday() < 5:
            value = round(value + rng.gauss(0, 0.03), 2)
            known = day + timedelta(days=1)
            if rng.random() < 0.1:  # revised a week later: two vintages
                revised = known + timedelta(days=7)
                rows.append(
                    {
                        "realtime_start": known.isoformat(),
                        "date": day.isoformat(),
                        "realtime_end": (revised - timedelta(days=1)).isoformat(),
                        "value": f"{value:.2f}",
                    }
                )
                rows.append(
                    {
                        "realtime_start": revised.isoformat(),
                        "date": day.isoformat(),
                        "realtime_end": "9999-12-31",
                        "value": f"{value + 0.01:.2f}",
                    }
                )
            else:
                text = "." if rng.random() < 0.03 else f"{value:.2f}"
                rows.append(
                    {
                        "realtime_start": known.isoformat(),
                        "date": day.isoformat(),
                        "realtime_end": "9999-12-31",
                        "value": text,
                    }
                )
        day += timedelta(days=1)
    return {"count": len(rows), "offset": 0, "limit": 100_000, "observations": rows}


async def main(since: int) -> None:
    load_start = os.getloadavg()
    stack.up()
    async with world.isolated_world(stack.env(), label="bench_macro") as w:
        pg, kafka = w.postgres, w.kafka
        settings = SinkSettings(
            postgres=pg,
            kafka=kafka,
            sink=SinkSection(macro_group_id=f"bench-{uuid.uuid4().hex[:6]}"),
        )
        end = date(2026, 11, 27)
        bodies = {s: json.dumps(fred_answer(s, since, end)).encode() for s in SERIES}
        rows = sum(len(json.loads(b)["observations"]) for b in bodies.values())
        print(
            f"{rows:,} FRED rows: {len(SERIES)} series, weekdays {since}-{end.year}, 10% revised "
            f"once; {os.cpu_count()} CPUs, load {load_start[0]:.2f}",
            flush=True,
        )

        def answer(request: httpx.Request) -> httpx.Response:
            body = bodies[request.url.params["series_id"]]
            return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

        producer = make_producer(kafka)
        await producer.start()
        try:
            async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
                source = FredSource(client, "b" * 32, RetryPolicy(min_interval=0))
                publisher = MacroPublisher(producer, kafka, set(SERIES))
                started = time.perf_counter()
                stats = await fetch_macro(source, SERIES, None, publisher, show_progress=False)
                pull_s = time.perf_counter() - started
        finally:
            await producer.stop()
        assert stats.published == rows, stats
        print(
            f"pull (FredSource + MacroPublisher -> Kafka) {rows / pull_s:>10,.0f} rows/s",
            flush=True,
        )

        started = time.perf_counter()
        drained = await run_macro_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
        drain_s = time.perf_counter() - started
        assert drained.rows_written == rows, drained
        print(
            f"drain (sink macro -> PostgreSQL)           {rows / drain_s:>10,.0f} rows/s "
            f"({drain_s:.1f} s, {drained.batches} batches)",
            flush=True,
        )
        # The whole topic again: the macro loop resumes from the positions it stored with its
        # batches (whatever the Kafka group), so they are forgotten first, as a restore to
        # before the load would.
        conn = await asyncpg.connect(settings.postgres.url)
        try:
            await conn.execute(
                "DELETE FROM pipeline.consumer_positions WHERE consumer = 'sink-macro'"
            )
        finally:
            await conn.close()
        replay = settings.model_copy(deep=True)
        replay.sink.macro_group_id = f"bench-replay-{uuid.uuid4().hex[:6]}"
        started = time.perf_counter()
        again = await run_macro_sink(replay, until_idle=True, consumer_options=FAST_GROUP)
        replay_s = time.perf_counter() - started
        print(
            f"replay (all {again.received:,} again)              {rows / replay_s:>10,.0f} "
            f"rows/s, {again.rows_written} written; load at end {os.getloadavg()[0]:.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--since", type=int, default=1955)
    asyncio.run(main(parser.parse_args().since))

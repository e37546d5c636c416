"""Daily-bar backfill throughput: 10 years x 100 daily instruments through Kafka into
``prices.bars``, beside a raw COPY of the same rows, in one run.

1. publish: the ingestor's ``BarPublisher`` (the one ``metalcast ingest bars`` uses) sends every
   bar to ``prices.bars.v1`` (several per request, keyed by symbol), waiting for Kafka's
   acknowledgements;
2. drain: the sink's bar loop (``run_bar_sink(until_idle=True)``, what ``metalcast sink bars``
   runs) decodes, checks and writes the whole topic into a fresh, migrated database (group join
   included);
3. the same again (a replay): nothing is written twice;
4. baseline: a raw asyncpg ``copy_records_to_table`` of the same rows (built before the clock
   starts, prices as decimals) into a table ``LIKE prices.bars INCLUDING ALL``.

Bars: one per weekday from 2016-01-01 to 2025-12-31 per instrument, a seeded random walk; the
instruments are catalogued first. Usage: ``uv run python bench/bench_bars.py [--instruments
100] [--years 10]`` (starts the stack if needed).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import time
import uuid
from datetime import date, timedelta
from decimal import Decimal

import asyncpg

from metalcast import stack
from metalcast.stack import world
from metalcast_core import (
    Catalogue,
    Instrument,
    PriceBar,
    make_producer,
    upsert_instruments,
)
from metalcast_ingestor.publisher import BarPublisher
from metalcast_sink.bars import BAR_COLUMNS
from metalcast_sink.bootstrap import run_bar_sink
from metalcast_sink.config import SinkSection, SinkSettings

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


def make_bars(instruments: int, years: int) -> list[PriceBar]:
    rng = random.Random(13)
    first = date(2025 - years + 1, 1, 1)
    days = [
        first + timedelta(days=i)
        for i in range((date(2025, 12, 31) - first).days + 1)
        if (first + timedelta(days=i)).weekday() < 5
    ]
    bars = []
    for n in range(instruments):
        symbol = f"EQ{n:04d}"
        price = 20.0 + 200.0 * rng.random()
        for day in days:
            open_ = price
            price *= math.exp(rng.gauss(0.0002, 0.015))
            high = max(open_, price) * (1 + rng.random() * 0.01)
            low = min(open_, price) * (1 - rng.random() * 0.01)
            bars.append(
                PriceBar(
                    symbol=symbol,
                    source="alphavantage",
                    date=day,
                    open=round(open_, 4),
                    high=round(high, 4),
                    low=round(low, 4),
                    close=round(price, 4),
                    volume=float(rng.randrange(100_000, 50_000_000)),
                )
            )
    return bars


def _row(bar: PriceBar) -> tuple[object, ...]:
    decimal = {"open", "high", "low", "close", "volume"}
    return tuple(
        Decimal(repr(getattr(bar, c))) if c in decimal else getattr(bar, c) for c in BAR_COLUMNS
    )


async def main(n_instruments: int, years: int) -> None:
    load_start = os.getloadavg()
    stack.up()
    async with world.isolated_world(stack.env(), label="bench_bars") as w:
        pg, kafka = w.postgres, w.kafka
        settings = SinkSettings(
            postgres=pg,
            kafka=kafka,
            sink=SinkSection(bars_group_id=f"bench-{uuid.uuid4().hex[:6]}"),
        )
        bars = make_bars(n_instruments, years)
        symbols = sorted({b.symbol for b in bars})
        conn = await asyncpg.connect(pg.url)
        try:
            await upsert_instruments(
                conn,
                [
                    Instrument(
                        symbol=s, kind="equity", cadence="daily", providers={"alphavantage": s}
                    )
                    for s in symbols
                ],
            )
        finally:
            await conn.close()
        print(
            f"{len(bars):,} bars: {n_instruments} instruments x {len(bars) // n_instruments} "
            f"weekdays ({years} years); {os.cpu_count()} CPUs, load {load_start[0]:.2f}",
            flush=True,
        )

        producer = make_producer(kafka)
        await producer.start()
        try:
            publisher = BarPublisher(producer, kafka, Catalogue(extra=symbols))
            started = time.perf_counter()
            chunk = 2_520  # about one instrument's 10 years: one `ingest bars --full` answer
            for i in range(0, len(bars), chunk):
                await publisher.publish(bars[i : i + chunk])
            publish_s = time.perf_counter() - started
        finally:
            await producer.stop()
        print(
            f"publish (BarPublisher -> Kafka)  {len(bars) / publish_s:>10,.0f} bars/s", flush=True
        )

        started = time.perf_counter()
        stats = await run_bar_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
        drain_s = time.perf_counter() - started
        assert stats.rows_written == len(bars), stats
        print(f"drain (sink bars -> PostgreSQL)  {len(bars) / drain_s:>10,.0f} bars/s", flush=True)
        end_to_end = len(bars) / (publish_s + drain_s)
        print(f"publish + drain, one after other {end_to_end:>10,.0f} bars/s", flush=True)

        # A replay of the same topic from the start: nothing is written twice. The bar loop
        # resumes from the positions it stored with its batches (whatever the Kafka group);
        # forgetting them makes it read the whole topic again, as a restore to before the
        # load would.
        conn = await asyncpg.connect(pg.url)
        try:
            await conn.execute(
                "DELETE FROM pipeline.consumer_positions WHERE consumer = 'sink-bars'"
            )
        finally:
            await conn.close()
        replay = SinkSettings(
            postgres=pg,
            kafka=kafka,
            sink=SinkSection(bars_group_id=f"bench-replay-{uuid.uuid4().hex[:6]}"),
        )
        started = time.perf_counter()
        again = await run_bar_sink(replay, until_idle=True, consumer_options=FAST_GROUP)
        replay_s = time.perf_counter() - started
        print(
            f"replay (all {again.received:,} again)     {len(bars) / replay_s:>10,.0f} "
            f"bars/s, {again.rows_written} written",
            flush=True,
        )

        rows = [_row(b) for b in bars]
        conn = await asyncpg.connect(pg.url)
        try:
            await conn.execute("CREATE TABLE bench_raw (LIKE prices.bars INCLUDING ALL)")
            started = time.perf_counter()
            await conn.copy_records_to_table("bench_raw", records=rows, columns=BAR_COLUMNS)
            copy_s = time.perf_counter() - started
            stored = await conn.fetchval("SELECT count(*) FROM prices.bars")
        finally:
            await conn.close()
        assert stored == len(bars)
        raw = len(bars) / copy_s
        print(f"raw COPY of the same rows        {raw:>10,.0f} rows/s", flush=True)
        print(
            f"ratios to raw COPY: drain {len(bars) / drain_s / raw:.2f}, "
            f"publish + drain {end_to_end / raw:.2f}; load at end {os.getloadavg()[0]:.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--instruments", type=int, default=100)
    parser.add_argument("--years", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.instruments, args.years))

"""End to end on the local stack: the ingestor and the sink as the user runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest

from metalcast_core import KafkaSettings, PostgresSettings
from metalcast_ingestor import bootstrap as ingestor
from metalcast_ingestor.config import IngestorSettings
from metalcast_sink.bootstrap import run_sink
from tests.support import FAST_GROUP, fetch, fetchval, sink_settings

pytestmark = pytest.mark.e2e


async def test_simulated_backfill_of_48_hours_fills_analytics_and_the_training_window(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    settings = IngestorSettings(postgres=pg_settings, kafka=kafka_settings)
    end = ingestor.current_hour() + timedelta(hours=1)
    start = end - timedelta(hours=48)
    stats = await ingestor.backfill(settings, "simulated", start, end)
    assert stats["published"] == 192
    assert stats["dead_lettered"] == 0

    await run_sink(
        sink_settings(pg_settings, kafka_settings), until_idle=True, consumer_options=FAST_GROUP
    )

    rows = await fetch(pg_settings, "SELECT * FROM analytics.metal_prices ORDER BY ts")
    assert len(rows) == 48
    assert [r["ts"] for r in rows] == [start + timedelta(hours=h) for h in range(48)]
    assert all(r[c] is not None and r[c] > 0 for r in rows for c in ("xau", "xag", "xpt", "xpd"))
    window = await fetch(pg_settings, "SELECT * FROM ml.metal_prices_training")
    assert [r["ts"] for r in window] == [r["ts"] for r in rows[-12:]]
    assert [r["xau"] for r in window] == [r["xau"] for r in rows[-12:]]

    # Backfilling the same range again publishes the same ticks; nothing new is stored.
    await ingestor.backfill(settings, "simulated", start, end)
    again = await run_sink(
        sink_settings(pg_settings, kafka_settings), until_idle=True, consumer_options=FAST_GROUP
    )
    assert again.rows_inserted == 0
    assert await fetchval(pg_settings, "SELECT count(*) FROM prices.ticks") == 192


def _sink_process(
    pg: PostgresSettings, kafka: KafkaSettings, group: str
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "METALCAST_POSTGRES__URL": pg.url,
        "METALCAST_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "METALCAST_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "METALCAST_SINK__GROUP_ID": group,
        "METALCAST_SINK__MAX_BATCH": "2000",
        "METALCAST_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "metalcast_sink"], env=env, stdout=subprocess.DEVNULL
    )


async def test_sink_killed_mid_stream_and_restarted_loses_and_duplicates_nothing(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    settings = IngestorSettings(postgres=pg_settings, kafka=kafka_settings)
    end = ingestor.current_hour() + timedelta(hours=1)
    start = end - timedelta(hours=10_000)
    stats = await ingestor.backfill(settings, "simulated", start, end)
    total = stats["published"]
    assert total == 40_000

    group = f"sink-{uuid.uuid4().hex[:8]}"
    count_sql = "SELECT count(*) FROM prices.ticks"
    kills = 0
    proc = _sink_process(pg_settings, kafka_settings, group)
    try:
        # Kill it with SIGKILL twice while it is writing, restarting it each time.
        while kills < 2:
            landed = await fetchval(pg_settings, count_sql)
            if landed > (kills + 1) * total // 4:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                kills += 1
                assert landed < total, "the sink finished before it could be killed"
                proc = _sink_process(pg_settings, kafka_settings, group)
            await asyncio.sleep(0.05)
        for _ in range(1200):
            if await fetchval(pg_settings, count_sql) >= total:
                break
            await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert await fetchval(pg_settings, count_sql) == total
    distinct = "SELECT count(DISTINCT (symbol, source, observed_at)) FROM prices.ticks"
    assert await fetchval(pg_settings, distinct) == total
    assert await fetchval(pg_settings, "SELECT count(*) FROM analytics.metal_prices") == 10_000
    nulls = "SELECT count(*) FROM analytics.metal_prices WHERE xau IS NULL OR xpd IS NULL"
    assert await fetchval(pg_settings, nulls) == 0

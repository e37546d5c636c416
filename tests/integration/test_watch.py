"""The pipeline watch on the real stack: stale ticks, failed training, lag, DLQ growth."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from metalcast_core import BATCH_LOADED, TICKS_DLQ, KafkaSettings, PostgresSettings
from metalcast_watch import WatchFailed, WatchSection, WatchSettings, watch
from tests.integration.test_backup import seed_ticks
from tests.support import produce_raw

pytestmark = pytest.mark.integration


def _settings(pg: PostgresSettings, kafka: KafkaSettings) -> WatchSettings:
    suffix = uuid.uuid4().hex[:8]
    return WatchSettings(
        postgres=pg,
        kafka=kafka,
        watch=WatchSection(
            max_tick_age_minutes=120,
            sink_group=f"sink-{suffix}",
            trainer_group=f"trainer-{suffix}",
            max_trainer_lag=2,
        ),
    )


async def test_watch_passes_on_fresh_data_and_fails_loudly_on_each_problem(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    settings = _settings(pg_settings, kafka_settings)
    await seed_ticks(pg_settings, 400)  # every metal, newest now
    assert await watch(settings) == []

    # A dead letter, a lagging trainer, a run stuck for two hours and a failed last training
    # run: all four named.
    await produce_raw(kafka_settings, TICKS_DLQ, [(b"k", b"{}")])
    await produce_raw(kafka_settings, BATCH_LOADED, [(b"k", b"{}")] * 3)
    conn = await asyncpg.connect(pg_settings.url)
    try:
        stuck = await conn.fetchval(
            "INSERT INTO ml.training_runs (trigger, family, x_size, y_size, status, started_at) "
            "VALUES ('manual', 'arima', 12, 1, 'running', now() - interval '2 hours') "
            "RETURNING id"
        )
        await conn.execute(
            "INSERT INTO ml.training_runs (trigger, family, x_size, y_size, status, error) "
            "VALUES ('manual', 'arima', 12, 1, 'failed', 'all fits diverged')"
        )
    finally:
        await conn.close()
    with pytest.raises(WatchFailed) as failed:
        await watch(settings)
    text = str(failed.value)
    assert "dead-letter topic" in text
    assert "grew by 1" in text
    assert f"trainer ({settings.watch.trainer_group}) lags 3" in text
    assert "all fits diverged" in text
    assert f"training run #{stuck} is stuck: running for 120 min" in text
    # The DLQ figure is remembered: no new dead letters, no DLQ complaint.
    with pytest.raises(WatchFailed) as again:
        await watch(settings)
    assert "dead-letter" not in str(again.value)

    conn = await asyncpg.connect(pg_settings.url)
    try:
        runs = await conn.fetch("SELECT ok FROM ops.watch_runs ORDER BY id")
    finally:
        await conn.close()
    assert [r["ok"] for r in runs] == [True, False, False]


async def test_watch_fails_on_stale_data(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    await seed_ticks(pg_settings, 400, newest=datetime.now(UTC) - timedelta(hours=5))
    with pytest.raises(WatchFailed, match=r"stale data: the newest XAU tick is 30\d min old"):
        await watch(_settings(pg_settings, kafka_settings))

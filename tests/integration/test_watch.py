"""The pipeline watch on the real stack: stale ticks, failed training, lag, DLQ growth (ticks'
and bars' dead-letter topics)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from metalcast_core import BARS_DLQ, BATCH_LOADED, TICKS_DLQ, KafkaSettings, PostgresSettings
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
    assert "the dead-letter topic prices.ticks.dlq grew by 1 messages" in text
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


async def test_watch_fails_when_the_bars_dead_letter_topic_grows(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    """A bar refused (by the ingestor or the bar sink) lands on prices.bars.dlq: the next watch
    run names that topic and by how much it grew; the one after passes again."""
    from metalcast_core import DeadLetter
    from tests.support import fetch

    settings = _settings(pg_settings, kafka_settings)
    await seed_ticks(pg_settings, 400)
    assert await watch(settings) == []
    letters = [
        DeadLetter(stage="sink", source="alphavantage", reason=f"SPY day {n}: bad", original=b"{}")
        for n in range(2)
    ]
    await produce_raw(kafka_settings, BARS_DLQ, [(b"SPY", BARS_DLQ.encode(d)) for d in letters])
    with pytest.raises(WatchFailed) as failed:
        await watch(settings)
    text = str(failed.value)
    assert (
        "the dead-letter topic prices.bars.dlq grew by 2 messages since the previous watch run "
        "(0 -> 2)"
    ) in text
    assert "prices.ticks.dlq" not in text
    assert await watch(settings) == []
    [row] = await fetch(
        pg_settings, "SELECT figures FROM ops.watch_runs WHERE NOT ok ORDER BY id DESC LIMIT 1"
    )
    import json

    seen = json.loads(row["figures"])["dead_letters"]
    assert seen["prices.bars.dlq"] == {"end": 2, "previous": 0}
    assert seen["prices.ticks.dlq"] == {"end": 0, "previous": 0}


async def test_watch_fails_on_stale_data(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    await seed_ticks(pg_settings, 400, newest=datetime.now(UTC) - timedelta(hours=5))
    with pytest.raises(WatchFailed, match=r"stale data: the newest XAU tick is 30\d min old"):
        await watch(_settings(pg_settings, kafka_settings))


async def test_watch_asks_the_workers_healthz_and_names_an_unhealthy_sinks_reason(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    """A real sink serving /healthz: passes while it is healthy; once its database is away,
    the watch fails with the sink's own reason and records the answer in its figures."""
    import asyncio
    import json
    import socket

    from metalcast_sink.bootstrap import run_sink
    from tests.support import FAST_GROUP, free_port, http_get, sink_settings

    await seed_ticks(pg_settings, 400)
    with socket.socket() as probe:  # a database address nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    good, bad = free_port(), free_port()
    settings = _settings(pg_settings, kafka_settings)
    settings.watch.sink_health_url = f"http://127.0.0.1:{good}/healthz"
    healthy = sink_settings(pg_settings, kafka_settings, metrics_port=good)
    away = sink_settings(
        PostgresSettings(url=f"postgresql://postgres@127.0.0.1:{dead}/nowhere"),
        kafka_settings,
        metrics_port=bad,
        db_retry_initial_s=0.1,
        db_retry_max_s=0.5,
    )
    stop = asyncio.Event()
    sinks = [
        asyncio.create_task(run_sink(s, stop=stop, consumer_options=FAST_GROUP))
        for s in (healthy, away)
    ]
    try:
        for port, want in ((good, 200), (bad, 503)):
            for _ in range(300):
                try:
                    if (await http_get(port, "/healthz"))[0] == want:
                        break
                except OSError:
                    pass
                await asyncio.sleep(0.1)
        assert await watch(settings) == []
        settings.watch.sink_health_url = f"http://127.0.0.1:{bad}/healthz"
        with pytest.raises(WatchFailed) as failed:
            await watch(settings)
    finally:
        stop.set()
        for task in sinks:
            task.cancel()  # the one without a database retries until cancelled
        await asyncio.gather(*sinks, return_exceptions=True)
    assert "the sink is unhealthy (/healthz 503): database unavailable since " in str(failed.value)
    conn = await asyncpg.connect(pg_settings.url)
    try:
        figures = await conn.fetchval("SELECT figures FROM ops.watch_runs ORDER BY id DESC LIMIT 1")
    finally:
        await conn.close()
    assert json.loads(figures)["workers"]["sink"]["status"] == 503


async def test_watch_names_each_stale_or_missing_macro_series_and_the_macro_dlq(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    """Fresh macro series pass; one left behind is named with its allowance, one never loaded
    is named where the macro pull is required, and the macro DLQ growing is reported."""
    from metalcast_core import MACRO_DLQ

    await seed_ticks(pg_settings, 400)
    settings = _settings(pg_settings, kafka_settings)
    settings.watch.require_macro = True
    today = datetime.now(UTC).date()
    conn = await asyncpg.connect(pg_settings.url)
    try:
        await conn.execute(
            "INSERT INTO macro.observations (series_id, date, realtime_start, realtime_end, "
            "value, fetched_at) SELECT s, d, d + 1, '9999-12-31', 4.2, now() "
            "FROM unnest($1::text[], $2::date[]) AS x(s, d)",
            ["DGS10", "DFII10", "T10YIE", "DTWEXBGS", "DFF"],
            [today - timedelta(days=2)] * 3 + [today - timedelta(days=10)] * 2,
        )
    finally:
        await conn.close()
    with pytest.raises(WatchFailed) as failed:
        await watch(settings)
    text = str(failed.value)
    # DTWEXBGS (a 7-day lag) is fine at 10 days; DFF (1 day) is not.
    assert "stale macro series DFF: the newest observation is for" in text
    assert "(10 days old; daily with a 1-day publication lag allows 6)" in text
    assert "DTWEXBGS" not in text
    assert text.count("stale macro series") == 1

    conn = await asyncpg.connect(pg_settings.url)
    try:
        await conn.execute("DELETE FROM macro.observations WHERE series_id = 'DFF'")
    finally:
        await conn.close()
    await produce_raw(kafka_settings, MACRO_DLQ, [(b"sink", b"{}")] * 2)
    with pytest.raises(WatchFailed) as again:
        await watch(settings)
    assert "no observation of the macro series DFF at all" in str(again.value)
    assert "macro.observations.dlq grew by 2 messages" in str(again.value)
    settings.watch.require_macro = False
    assert await watch(settings) == []

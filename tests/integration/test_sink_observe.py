"""The sink's /metrics and /healthz on real Kafka and PostgreSQL: the figures match what was
published and stored; a database that does not answer is a 503 naming it; SIGTERM closes the
door with the service."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from metalcast_core import (
    METAL_SYMBOLS,
    TICKS,
    TICKS_DLQ,
    DeadLetter,
    KafkaSettings,
    PostgresSettings,
    PriceTick,
)
from metalcast_sink.bootstrap import run_sink
from tests.support import (
    FAST_GROUP,
    fetchval,
    free_port,
    http_get,
    port_closed,
    produce_raw,
    publisher,
    read_all,
    scrape,
    sink_settings,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def ticks(hours: int) -> list[PriceTick]:
    return [
        PriceTick(
            symbol=s,
            source="test",
            observed_at=T0 + timedelta(hours=h, minutes=5),
            price=100.0 + h,
        )
        for h in range(hours)
        for s in METAL_SYMBOLS
    ]


async def until(what: str, check: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_metrics_and_health_match_what_was_published_and_stored(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    port = free_port()
    settings = sink_settings(pg_settings, kafka_settings, metrics_port=port, lag_every_s=0.2)
    good = ticks(30)  # 120 ticks
    unknown = PriceTick(symbol="XAU", source="test", observed_at=T0, price=1.0).model_dump(
        mode="json"
    )
    unknown["symbol"] = "ZZZ"
    async with publisher(kafka_settings, settings.known_symbols) as pub:
        await pub.publish(good)
        await pub.publish(good[:20])  # again: received, not written twice
    await produce_raw(
        kafka_settings,
        TICKS,
        [(b"XAU", b"not json"), (b"ZZZ", json.dumps(unknown).encode()), (b"XAG", b"{}")],
    )
    stop = asyncio.Event()
    sink = asyncio.create_task(run_sink(settings, stop=stop, consumer_options=FAST_GROUP))
    try:

        async def caught_up() -> Any:
            if sink.done():
                sink.result()  # raise what stopped it
            try:
                m = await scrape(port)
            except OSError:
                return None
            lags = [v for (name, _), v in m.items() if name == "metalcast_sink_consumer_lag"]
            done = m.get(("metalcast_sink_ticks_received_total", ())) == 143
            placed = len(lags) == kafka_settings.ticks_partitions
            return m if done and placed and not any(lags) else None

        metrics = await until("the sink to read every message", caught_up)
        status, body = await http_get(port, "/healthz")
    finally:
        stop.set()
        stats = await asyncio.wait_for(sink, 30)

    stored = await fetchval(pg_settings, "SELECT count(*) FROM prices.ticks")
    letters = [DeadLetter.model_validate_json(v) for v in await read_all(kafka_settings, TICKS_DLQ)]
    assert stored == 120
    assert metrics[("metalcast_sink_rows_written_total", ())] == stored == stats.rows_inserted
    assert metrics[("metalcast_sink_batches_total", ())] == stats.batches >= 1
    assert metrics[("metalcast_sink_batch_write_duration_seconds_count", ())] == stats.batches
    assert metrics[("metalcast_sink_database_up", ())] == 1
    by_reason = {
        dict(labels)["reason"]: v
        for (name, labels), v in metrics.items()
        if name == "metalcast_sink_dead_letters_total"
    }
    assert by_reason == {"invalid": 2, "unknown_symbol": 1}
    assert sum(by_reason.values()) == len(letters) == 3
    assert status == 200
    health = json.loads(body)
    assert health["status"] == "ok"
    assert health["lag"] == 0
    assert health["batches"] == stats.batches
    assert await port_closed(port)  # stopped with the sink


async def test_a_sink_whose_database_is_down_answers_503_naming_it(
    kafka_settings: KafkaSettings,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    port = free_port()
    settings = sink_settings(
        PostgresSettings(url=f"postgresql://postgres@127.0.0.1:{dead}/nowhere"),
        kafka_settings,
        metrics_port=port,
        db_retry_initial_s=0.1,
        db_retry_max_s=0.5,
    )
    stop = asyncio.Event()
    sink = asyncio.create_task(run_sink(settings, stop=stop, consumer_options=FAST_GROUP))
    try:

        async def unhealthy() -> Any:
            assert not sink.done(), "the sink stopped"
            try:
                status, body = await http_get(port, "/healthz")
            except OSError:
                return None
            return (status, json.loads(body)) if status == 503 else None

        _status, health = await until("/healthz to say 503", unhealthy)
        metrics = await scrape(port)
    finally:
        sink.cancel()  # it retries the database until stopped; cancelling is run_until_signal's
        with pytest.raises(asyncio.CancelledError):
            await sink
    assert health["status"] == "unhealthy"
    assert health["reason"].startswith("database unavailable since 20")
    assert f"{dead}" in health["reason"]  # the error names the address it could not reach
    assert metrics[("metalcast_sink_database_up", ())] == 0
    assert metrics[("metalcast_sink_db_retries_total", ())] >= 1
    assert await port_closed(port)


async def test_sigterm_stops_the_sink_and_its_status_server(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "METALCAST_POSTGRES__URL": pg_settings.url,
        "METALCAST_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "METALCAST_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
        "METALCAST_SINK__GROUP_ID": f"sink-{kafka_settings.topic_prefix}",
        "METALCAST_SINK__METRICS_PORT": str(port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "metalcast_sink",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def healthy() -> Any:
            assert proc.returncode is None, "the sink exited"
            try:
                return (await http_get(port, "/healthz"))[0] == 200
            except OSError:
                return False

        await until("the sink's /healthz", healthy, 90)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert json.loads(out.decode().strip().splitlines()[-1])["db_unavailable_since"] is None
    assert await port_closed(port)

"""What the watch looks at: the newest tick of every metal, the training runs, the newest
observation of every macro series (PostgreSQL), the sinks' and the trainer's consumer lag and
the end offsets of every dead-letter topic (``rules.DEAD_LETTER_TOPICS``: ticks, bars and
macro observations) (Kafka).

:func:`observe` never raises for a figure it cannot read: the reason goes into
``Figures.errors``, which the rules report like any other problem.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from metalcast_core import (
    BATCH_LOADED,
    MACRO,
    METAL_SYMBOLS,
    TICKS,
    KafkaSettings,
    make_consumer,
)
from metalcast_watch.config import WatchSettings
from metalcast_watch.rules import DEAD_LETTER_TOPICS, Figures

DLQ_STATE_KEY = "dlq_end_offset"


async def _newest_ticks(conn: asyncpg.Connection) -> dict[str, datetime | None]:
    # One index probe per metal on (symbol, observed_at, source).
    rows = await conn.fetch(
        """
        SELECT s.symbol,
               (SELECT max(observed_at) FROM prices.ticks AS t WHERE t.symbol = s.symbol) AS newest
        FROM unnest($1::text[]) AS s(symbol)
        """,
        list(METAL_SYMBOLS),
    )
    return {r["symbol"]: r["newest"] for r in rows}


async def _last_training(conn: asyncpg.Connection) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT id, status, error, started_at, finished_at FROM ml.training_runs "
        "ORDER BY started_at DESC, id DESC LIMIT 1"
    )
    return dict(row) if row is not None else None


async def _running_runs(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, started_at FROM ml.training_runs WHERE status = 'running' ORDER BY id"
    )
    return [dict(r) for r in rows]


async def _outbox(conn: asyncpg.Connection) -> tuple[int, datetime | None]:
    row = await conn.fetchrow(
        "SELECT count(*) AS n, min(loaded_at) AS oldest FROM pipeline.batches "
        "WHERE published_at IS NULL"
    )
    return (int(row["n"]), row["oldest"]) if row is not None else (0, None)


async def _end_offsets(
    kafka: KafkaSettings, topic: str
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(beginning, end) offsets of every partition of ``topic``."""
    consumer = make_consumer(kafka, [], group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        return dict(begin), dict(end)
    finally:
        await consumer.stop()


async def consumer_lag(kafka: KafkaSettings, group: str, topic: str) -> int:
    """Messages of ``topic`` the group has not committed yet (all retained ones if it never
    committed)."""
    begin, end = await _end_offsets(kafka, topic)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers, client_id=kafka.client_id
    )
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=list(end))
    finally:
        await admin.close()
    lag = 0
    for tp, last in end.items():
        meta = committed.get(tp)
        position = meta.offset if meta is not None and meta.offset >= 0 else begin[tp]
        lag += max(0, last - position)
    return lag


async def _macro(conn: asyncpg.Connection) -> dict[str, dict[str, Any]]:
    """Per series of ``macro.series``: its frequency and lag, its newest observation date,
    newest vintage and last load (one index probe each on the primary key)."""
    rows = await conn.fetch(
        """
        SELECT s.series_id, s.frequency, s.publication_lag_days,
               (SELECT max(date) FROM macro.observations o
                 WHERE o.series_id = s.series_id) AS newest_date,
               (SELECT max(realtime_start) FROM macro.observations o
                 WHERE o.series_id = s.series_id) AS newest_vintage,
               (SELECT max(loaded_at) FROM macro.observations o
                 WHERE o.series_id = s.series_id) AS last_loaded
        FROM macro.series s ORDER BY s.series_id
        """
    )
    return {r["series_id"]: {k: v for k, v in dict(r).items() if k != "series_id"} for r in rows}


async def _dlq(
    conn: asyncpg.Connection, kafka: KafkaSettings, topic: str
) -> tuple[int, int | None]:
    """(end offset now, end offset the previous watch saw) of ``topic``; stores the new one."""
    _, end = await _end_offsets(kafka, topic)
    now = sum(end.values())
    key = f"{DLQ_STATE_KEY}:{topic}"
    previous = await conn.fetchval("SELECT value FROM ops.watch_state WHERE key = $1", key)
    await conn.execute(
        """
        INSERT INTO ops.watch_state (key, value, updated_at) VALUES ($1, $2::jsonb, now())
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
        """,
        key,
        json.dumps(now),
    )
    return now, (int(json.loads(previous)) if previous is not None else None)


def worker_health(url: str, timeout_s: float) -> dict[str, Any]:
    """GET a worker's /healthz: its status and JSON body, or why it did not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:  # 503 and friends: the body says why
        status, raw = exc.code, exc.read()
    except Exception as exc:
        return {"url": url, "status": None, "error": f"{type(exc).__name__}: {exc}"}
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw[:200].decode("utf-8", "replace")
    return {"url": url, "status": status, "body": body}


async def observe(settings: WatchSettings, conn: asyncpg.Connection) -> Figures:
    figures = Figures(checked_at=datetime.now(UTC))
    cfg, kafka = settings.watch, settings.kafka
    try:
        figures.newest_tick = await _newest_ticks(conn)
    except Exception as exc:
        figures.errors.append(f"cannot read the newest ticks: {exc}")
    try:
        figures.last_training = await _last_training(conn)
    except Exception as exc:
        figures.errors.append(f"cannot read the last training run: {exc}")
    try:
        figures.running_runs = await _running_runs(conn)
    except Exception as exc:
        figures.errors.append(f"cannot read the running training runs: {exc}")
    try:
        figures.outbox_unpublished, figures.outbox_oldest = await _outbox(conn)
    except Exception as exc:
        figures.errors.append(f"cannot read the sink's outbox: {exc}")
    for attr, group, topic in (
        ("sink_lag", cfg.sink_group, kafka.topic_name(TICKS)),
        ("trainer_lag", cfg.trainer_group, kafka.topic_name(BATCH_LOADED)),
    ):
        try:
            setattr(figures, attr, await consumer_lag(kafka, group, topic))
        except Exception as exc:
            figures.errors.append(f"cannot measure the lag of {group} on {topic}: {exc!r}")
    for dlq in DEAD_LETTER_TOPICS:
        try:
            end, previous = await _dlq(conn, kafka, kafka.topic_name(dlq))
        except Exception as exc:
            figures.errors.append(f"cannot read the dead-letter topic {dlq.name}: {exc!r}")
            continue
        figures.dead_letters[dlq.name] = {"end": end, "previous": previous}
    try:
        figures.macro = await _macro(conn)
    except Exception as exc:
        figures.errors.append(f"cannot read the macro series: {exc}")
    try:
        figures.macro_sink_lag = await consumer_lag(
            kafka, cfg.macro_sink_group, kafka.topic_name(MACRO)
        )
    except Exception as exc:
        figures.errors.append(f"cannot measure the lag of {cfg.macro_sink_group}: {exc!r}")
    urls = cfg.health_urls()
    answers = await asyncio.gather(
        *(asyncio.to_thread(worker_health, url, cfg.health_timeout_s) for url in urls.values())
    )
    figures.workers = dict(zip(urls, answers, strict=True))
    return figures

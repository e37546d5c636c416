"""The pipeline watch (Airflow's ``metalcast_watch`` runs it hourly).

Fails, with every reason in the message, when:
- the newest tick of a metal is older than ``watch.max_tick_age_minutes`` (or there is none);
- the last training run failed;
- the sink's or the trainer's consumer group lags more than its threshold;
- the dead-letter topic grew since the previous watch run.

:func:`observe` gathers the figures (PostgreSQL, Kafka); :func:`evaluate` is a pure function
from figures and thresholds to problems; :func:`watch` does both, records the run in
``ops.watch_runs`` and raises :class:`WatchFailed`. Only metalcast-core's dependencies are
needed, so Airflow's workers import it cheaply (inside the task, never at DAG parse time).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from metalcast_backup.config import BackupSettings, WatchSection
from metalcast_core import (
    BATCH_LOADED,
    METAL_SYMBOLS,
    TICKS,
    TICKS_DLQ,
    KafkaSettings,
    make_consumer,
)

log = logging.getLogger("metalcast.watch")

DLQ_STATE_KEY = "dlq_end_offset"


class WatchFailed(RuntimeError):
    """The pipeline is unhealthy; the message lists every reason."""


@dataclass
class Figures:
    """What the watch saw. ``None`` where it could not look (the reason is in ``errors``)."""

    checked_at: datetime
    newest_tick: dict[str, datetime | None] = field(default_factory=dict)
    last_training: dict[str, Any] | None = None
    running_runs: list[dict[str, Any]] = field(default_factory=list)
    sink_lag: int | None = None
    trainer_lag: int | None = None
    dlq_end: int | None = None
    dlq_previous: int | None = None
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps(asdict(self), default=str)


def evaluate(figures: Figures, cfg: WatchSection) -> list[str]:
    """Every problem the figures show, as sentences for a task log. Pure."""
    problems = list(figures.errors)
    for symbol, newest in sorted(figures.newest_tick.items()):
        if newest is None:
            problems.append(f"no tick of {symbol} at all")
            continue
        age_min = (figures.checked_at - newest).total_seconds() / 60
        if age_min > cfg.max_tick_age_minutes:
            problems.append(
                f"stale data: the newest {symbol} tick is {age_min:.0f} min old "
                f"({newest:%Y-%m-%d %H:%M} UTC; threshold {cfg.max_tick_age_minutes:.0f} min)"
            )
    run = figures.last_training
    if cfg.fail_on_failed_training and run is not None and run.get("status") == "failed":
        problems.append(
            f"the last training run (#{run.get('id')}, started {run.get('started_at')}) failed: "
            f"{run.get('error') or 'no error recorded'}"
        )
    for running in figures.running_runs:
        started = running["started_at"]
        age_min = (figures.checked_at - started).total_seconds() / 60
        if age_min > cfg.max_run_minutes:
            problems.append(
                f"training run #{running['id']} is stuck: running for {age_min:.0f} min "
                f"(since {started:%Y-%m-%d %H:%M} UTC; threshold {cfg.max_run_minutes:.0f} min)"
            )
    if figures.sink_lag is not None and figures.sink_lag > cfg.max_sink_lag:
        problems.append(
            f"the sink ({cfg.sink_group}) lags {figures.sink_lag} messages on {TICKS.name} "
            f"(threshold {cfg.max_sink_lag})"
        )
    if figures.trainer_lag is not None and figures.trainer_lag > cfg.max_trainer_lag:
        problems.append(
            f"the trainer ({cfg.trainer_group}) lags {figures.trainer_lag} messages on "
            f"{BATCH_LOADED.name} (threshold {cfg.max_trainer_lag})"
        )
    if (
        cfg.fail_on_dlq_growth
        and figures.dlq_end is not None
        and figures.dlq_previous is not None
        and figures.dlq_end > figures.dlq_previous
    ):
        problems.append(
            f"the dead-letter topic {TICKS_DLQ.name} grew by "
            f"{figures.dlq_end - figures.dlq_previous} messages since the previous watch run "
            f"({figures.dlq_previous} -> {figures.dlq_end})"
        )
    return problems


# --- observing ----------------------------------------------------------------------------


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


async def _dlq(conn: asyncpg.Connection, kafka: KafkaSettings) -> tuple[int, int | None]:
    """(end offset now, end offset the previous watch saw); stores the new one."""
    topic = kafka.topic_name(TICKS_DLQ)
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


async def observe(settings: BackupSettings, conn: asyncpg.Connection) -> Figures:
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
    for attr, group, topic in (
        ("sink_lag", cfg.sink_group, kafka.topic_name(TICKS)),
        ("trainer_lag", cfg.trainer_group, kafka.topic_name(BATCH_LOADED)),
    ):
        try:
            setattr(figures, attr, await consumer_lag(kafka, group, topic))
        except Exception as exc:
            figures.errors.append(f"cannot measure the lag of {group} on {topic}: {exc!r}")
    try:
        figures.dlq_end, figures.dlq_previous = await _dlq(conn, kafka)
    except Exception as exc:
        figures.errors.append(f"cannot read the dead-letter topic: {exc!r}")
    return figures


async def watch(settings: BackupSettings, *, raise_on_problems: bool = True) -> list[str]:
    """Observe, evaluate, record the run; raise :class:`WatchFailed` listing every problem."""
    conn = await asyncpg.connect(settings.postgres.url)
    try:
        figures = await observe(settings, conn)
        problems = evaluate(figures, settings.watch)
        await conn.execute(
            "INSERT INTO ops.watch_runs (checked_at, ok, problems, figures) "
            "VALUES ($1, $2, $3::jsonb, $4::jsonb)",
            figures.checked_at,
            not problems,
            json.dumps(problems),
            figures.as_json(),
        )
    finally:
        await conn.close()
    log.info("watch figures: %s", figures.as_json())
    if problems and raise_on_problems:
        raise WatchFailed("metalcast watch FAILED:\n" + "\n".join(f"  - {p}" for p in problems))
    return problems

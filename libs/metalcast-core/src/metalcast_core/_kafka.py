"""Kafka client factories (aiokafka). Callers own the lifecycle: start, then try/finally stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from metalcast_core._settings import KafkaSettings
from metalcast_core._topics import ALL_TOPICS, TICKS, Topic

log = logging.getLogger(__name__)


def make_producer(settings: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_batch_size": 1 << 20,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(
    settings: KafkaSettings, topics: Iterable[str], group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_partition_fetch_bytes": 8 << 20,
        "fetch_max_bytes": 64 << 20,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


async def ensure_topics(settings: KafkaSettings) -> list[str]:
    """Create every registered topic that does not exist yet. Returns the names created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id=settings.client_id
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = []
        for topic in ALL_TOPICS:
            name = settings.topic_name(topic)
            if name in existing:
                continue
            partitions = settings.ticks_partitions if topic is TICKS else topic.partitions
            wanted.append(
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs=topic.configs(),
                )
            )
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
        return [t.name for t in wanted]
    finally:
        await admin.close()


async def wait_for_kafka(settings: KafkaSettings, timeout_s: float = 60.0) -> None:
    """Wait until the brokers answer metadata requests."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


async def publish_once(
    settings: KafkaSettings, topic: Topic[Any], items: Sequence[tuple[str, Any]]
) -> None:
    """Publish ``(key, event)`` pairs on ``topic`` with a short-lived producer (for command
    lines and one-off tasks; services keep their own producer)."""
    if not items:
        return
    producer = make_producer(settings)
    await producer.start()
    try:
        for key, event in items:
            await producer.send_and_wait(
                settings.topic_name(topic), topic.encode(event), key=key.encode()
            )
    finally:
        await producer.stop()

"""Composition root of the sink: builds the clients from settings and runs the loop."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Mapping
from typing import Any

from metalcast_core import (
    TICKS,
    connect,
    ensure_topics,
    make_consumer,
    make_producer,
    wait_for_kafka,
)
from metalcast_sink.config import SinkSettings
from metalcast_sink.outbox import batch_ids_published_since
from metalcast_sink.service import Sink, SinkStats


async def run_sink(
    settings: SinkSettings,
    stop: asyncio.Event | None = None,
    until_idle: bool = False,
    consumer_options: Mapping[str, Any] | None = None,
) -> SinkStats:
    await wait_for_kafka(settings.kafka)  # a broker restarting: wait rather than exit
    await ensure_topics(settings.kafka)
    consumer = make_consumer(
        settings.kafka,
        [],  # subscribed below, with the listener that resumes from the database
        group_id=settings.sink.group_id,
        max_poll_records=settings.sink.max_batch,
        max_partition_fetch_bytes=settings.sink.max_partition_fetch_bytes,
        **(consumer_options or {}),
    )
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        sink = Sink(
            settings,
            consumer,
            producer,
            lambda: connect(settings.postgres),
            published_since=lambda since: batch_ids_published_since(settings.kafka, since),
        )
        consumer.subscribe([settings.kafka.topic_name(TICKS)], listener=sink.listener())
        await consumer.start()
        try:
            # What start-up built lives as long as the process: out of the collector's sight,
            # so that its passes over the many short-lived objects per batch stay short.
            gc.collect()
            gc.freeze()
            return await sink.run(stop=stop, until_idle=until_idle)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()

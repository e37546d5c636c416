"""Reading ``pipeline.batch-loaded.v1`` back: which batches already have their event.

The sink publishes a batch's event after its commit and marks it published with the next
batch. A crash in between leaves an event on the topic whose row is still unmarked; the outbox
relay asks this reader before sending again, so that each batch has exactly one event.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from aiokafka import TopicPartition

from metalcast_core import BATCH_LOADED, DecodeError, KafkaSettings, make_consumer


async def batch_ids_published_since(kafka: KafkaSettings, since: datetime) -> set[uuid.UUID]:
    """The batch ids of every event on the topic with a timestamp at or after ``since``."""
    topic = kafka.topic_name(BATCH_LOADED)
    partitions = [TopicPartition(topic, p) for p in range(BATCH_LOADED.partitions)]
    consumer = make_consumer(kafka, [], group_id=None)
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.offsets_for_times(
            dict.fromkeys(partitions, int(since.timestamp() * 1000))
        )
        for tp in partitions:
            found = starts.get(tp)
            consumer.seek(tp, found.offset if found is not None else ends[tp])
        ids: set[uuid.UUID] = set()
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            fetched = await consumer.getmany(timeout_ms=1_000)
            for records in fetched.values():
                for record in records:
                    try:
                        ids.add(BATCH_LOADED.decode(record.value).batch_id)
                    except DecodeError:
                        continue  # not ours to judge here; the trainer dead-letters it
        return ids
    finally:
        await consumer.stop()

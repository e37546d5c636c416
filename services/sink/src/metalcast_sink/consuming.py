"""What the tick loop (:mod:`metalcast_sink.service`) and the bar loop
(:mod:`metalcast_sink.bars`) do alike with the records they consume."""

from __future__ import annotations

import logging
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from metalcast_core import DeadLetter

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]


def dead_letter(record: Record, reason: str) -> DeadLetter:
    """The dead letter of a consumed record: its bytes, where it was read, and why."""
    return DeadLetter(
        stage="sink",
        source=record.topic,
        reason=reason,
        original=record.value or b"",
        original_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
    ).within()  # a poison pill's report must itself fit in a Kafka message


async def commit_owned(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
    """Commit exactly ``offsets`` (the consumer's position may already be past a batch that is
    decoded but not yet written), for the partitions still assigned."""
    ours = consumer.assignment()
    offsets = {tp: offset for tp, offset in offsets.items() if tp in ours}
    if not offsets:
        return
    try:
        await consumer.commit(offsets)
    except (CommitFailedError, IllegalStateError):
        # Rebalanced mid-batch (the group moved on, or these partitions are no longer ours):
        # their new owner re-reads these messages; the writes are idempotent, so that is
        # harmless.
        log.warning("offset commit failed after a rebalance; the batch will be re-read")

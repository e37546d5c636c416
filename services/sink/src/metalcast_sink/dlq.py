"""Dead letters you can act on: read ``prices.ticks.dlq`` (filtered by reason and time) and
replay what was fixed since (a symbol added to the catalogue, a provider bug fixed).

A replay publishes each letter's ``original`` bytes, unchanged, to the ticks topic, keyed by
the symbol they name (so per-symbol order holds), where the sink judges them again: what is
still wrong goes back to the DLQ with its reason; what is now good lands once (the natural
key makes a replay of a replay harmless). A letter cut to fit Kafka (``truncated``) cannot be
replayed; nor can bytes that name no symbol.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from metalcast_core import (
    TICKS,
    TICKS_DLQ,
    DeadLetter,
    KafkaSettings,
    make_consumer,
    make_producer,
)


@dataclass(frozen=True)
class Letter:
    partition: int
    offset: int
    letter: DeadLetter


async def read_letters(
    kafka: KafkaSettings,
    *,
    reason: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[Letter]:
    """Every dead letter (oldest first) whose reason contains ``reason`` and that failed at
    or after ``since``; at most ``limit`` (the newest). Reads without a consumer group."""
    topic = kafka.topic_name(TICKS_DLQ)
    consumer = make_consumer(kafka, [], group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[Letter] = []
        while await _behind(consumer, tps, ends):
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    letter = TICKS_DLQ.decode(record.value)
                    if reason is not None and reason.lower() not in letter.reason.lower():
                        continue
                    if since is not None and letter.failed_at < since:
                        continue
                    found.append(Letter(record.partition, record.offset, letter))
        found.sort(key=lambda item: (item.letter.failed_at, item.partition, item.offset))
        return found[-limit:] if limit else found
    finally:
        await consumer.stop()


async def _behind(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], ends: dict[TopicPartition, int]
) -> bool:
    for tp in tps:
        if await consumer.position(tp) < ends[tp]:
            return True
    return False


def replay_key(letter: DeadLetter) -> tuple[bytes | None, str | None]:
    """The ticks-topic key of a letter's original (its symbol), or why it cannot be replayed."""
    if letter.truncated:
        return None, "truncated: the original was too large to keep whole"
    try:
        payload = json.loads(letter.original)
    except ValueError:
        return None, "the original is not JSON"
    symbol = payload.get("symbol") if isinstance(payload, dict) else None
    if not isinstance(symbol, str) or not symbol:
        return None, "the original names no symbol"
    return symbol.encode(), None


async def replay(kafka: KafkaSettings, letters: Sequence[Letter]) -> dict[str, int]:
    """Publish the replayable originals to the ticks topic; count what was sent and skipped."""
    sendable: list[tuple[bytes, bytes]] = []
    skipped = 0
    for item in letters:
        key, _why = replay_key(item.letter)
        if key is None:
            skipped += 1
            continue
        sendable.append((key, item.letter.original))
    if sendable:
        producer = make_producer(kafka)
        await producer.start()
        try:
            for key, value in sendable:
                await producer.send_and_wait(kafka.topic_name(TICKS), value, key=key)
        finally:
            await producer.stop()
    return {"replayed": len(sendable), "skipped": skipped}

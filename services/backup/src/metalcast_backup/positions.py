"""The consumers' positions a backup holds, checked against what Kafka still keeps.

The sink stores, with every batch, the offset it has read each partition up to
(``pipeline.consumer_positions``). A backup records those positions from the very snapshot it
dumps; after a restore the sink resumes from them, so everything published after the backup is
read again, as long as Kafka still has it. Before a restore into the live database, each
position is compared with its partition's earliest retained offset: what retention has already
deleted cannot come back, and the restore says so (and refuses, unless told to accept it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from metalcast_backup.manifest import Position
from metalcast_core import KafkaSettings

# (topic, partition) -> (earliest retained offset, end offset)
Bounds = dict[tuple[str, int], tuple[int, int]]


class LogBounds(Protocol):
    """Where each partition's log starts and ends now (partitions that do not exist are left
    out of the answer)."""

    async def bounds(self, partitions: Sequence[tuple[str, int]]) -> Bounds: ...


class KafkaLogBounds:
    """:class:`LogBounds` from the brokers, with a consumer outside any group."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings

    async def _existing(self, partitions: Sequence[tuple[str, int]]) -> list[TopicPartition]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._settings.bootstrap_servers,
            client_id=f"{self._settings.client_id}-restore-check",
        )
        await admin.start()
        try:
            described = await admin.describe_topics(sorted({t for t, _ in partitions}))
        finally:
            await admin.close()
        numbers = {
            d["topic"]: {p["partition"] for p in d.get("partitions", [])}
            for d in described
            if d.get("error_code", 0) == 0
        }
        return [TopicPartition(t, n) for t, n in partitions if n in numbers.get(t, set())]

    async def bounds(self, partitions: Sequence[tuple[str, int]]) -> Bounds:
        existing = await self._existing(partitions)
        if not existing:
            return {}
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap_servers,
            client_id=f"{self._settings.client_id}-restore-check",
            group_id=None,
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            starts = await consumer.beginning_offsets(existing)
            ends = await consumer.end_offsets(existing)
            return {(tp.topic, tp.partition): (starts[tp], ends[tp]) for tp in existing}
        finally:
            await consumer.stop()


async def read_positions(conn: asyncpg.Connection) -> list[Position]:
    """Every stored position (in the caller's snapshot); none if the table does not exist."""
    if await conn.fetchval("SELECT to_regclass('pipeline.consumer_positions')") is None:
        return []
    rows = await conn.fetch(
        "SELECT consumer, topic, partition, next_offset FROM pipeline.consumer_positions"
        " ORDER BY consumer, topic, partition"
    )
    return [Position(**dict(r)) for r in rows]


@dataclass(frozen=True)
class PartitionCheck:
    """One partition: the restored position against the log Kafka keeps now."""

    position: Position
    earliest: int | None  # None: the partition no longer exists
    end: int | None

    @property
    def lost(self) -> int:
        """Messages after the position that Kafka no longer has (0: none)."""
        if self.earliest is None:
            return 1  # unknown how many: the whole partition is gone
        return max(0, self.earliest - self.position.next_offset)

    @property
    def reread(self) -> int:
        """Messages the consumer will read again after the restore."""
        if self.earliest is None or self.end is None:
            return 0
        return max(0, self.end - max(self.earliest, self.position.next_offset))

    def line(self) -> str:
        p = self.position
        where = f"{p.consumer} {p.topic}[{p.partition}] restored at offset {p.next_offset}"
        if self.earliest is None:
            return f"{where}: the partition no longer exists; what it held cannot be re-read"
        if self.lost:
            return (
                f"{where}: Kafka keeps offsets {self.earliest} and later; messages "
                f"{p.next_offset}..{self.earliest - 1} ({self.lost}) are gone and cannot be "
                f"re-read; {self.reread} will be"
            )
        return f"{where}: {self.reread} message(s) published after the backup will be re-read"


async def check_positions(bounds: LogBounds, positions: Sequence[Position]) -> list[PartitionCheck]:
    if not positions:
        return []
    now = await bounds.bounds([(p.topic, p.partition) for p in positions])
    checks = []
    for p in positions:
        earliest, end = now.get((p.topic, p.partition), (None, None))
        checks.append(PartitionCheck(p, earliest, end))
    return checks

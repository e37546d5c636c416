"""What the tick loop (:mod:`metalcast_sink.service`) and the table loops
(:mod:`metalcast_sink.loading`: daily bars, macro observations) do alike: one retrying
connection to PostgreSQL, dead letters of consumed records, offset commits."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import TypeAlias, TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from metalcast_core import DeadLetter

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
T = TypeVar("T")
Connect = Callable[[], Awaitable[asyncpg.Connection]]

# Errors that mean "the database is not reachable right now": wait and retry the batch.
DB_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.InternalClientError,
)

# Errors that roll back a batch's transaction and go away when it runs again: two sink
# instances updating the same rows in an unlucky order (a deadlock).
RETRY_BATCH: tuple[type[BaseException], ...] = (asyncpg.TransactionRollbackError,)


class RetryingConnection:
    """One connection to PostgreSQL, opened on first use and again after a failure. Work
    given to :meth:`run` is retried whole (with exponential backoff) while the database is
    unreachable or its transaction was rolled back by a deadlock; the batch is kept.

    ``on_error`` hears of every failed attempt before the wait (metrics, logs), and
    ``on_answer`` of every success (a database answering again)."""

    def __init__(
        self,
        connect: Connect,
        initial_s: float,
        max_s: float,
        on_error: Callable[[RetryCallState], None] | None = None,
        on_answer: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._initial_s = initial_s
        self._max_s = max_s
        self._on_error = on_error
        self._on_answer = on_answer
        self._conn: asyncpg.Connection | None = None

    def retrying(self) -> AsyncRetrying:
        """The retry loop :meth:`run` uses, for work on a connection of its own."""
        return AsyncRetrying(
            retry=retry_if_exception_type((*DB_UNAVAILABLE, *RETRY_BATCH)),
            wait=wait_exponential_jitter(multiplier=self._initial_s, max=self._max_s),
            before_sleep=self._failed,
            reraise=True,
        )

    async def run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``work`` on the connection, reconnecting and retrying while the DB is down."""
        async for attempt in self.retrying():
            with attempt:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await self._connect()
                result = await work(self._conn)
                self.answered()
                return result
        raise AssertionError("unreachable")

    def answered(self) -> None:
        if self._on_answer is not None:
            self._on_answer()

    def _failed(self, state: RetryCallState) -> None:
        if self._on_error is not None:
            self._on_error(state)
        else:
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning("database unavailable (attempt %d): %s", state.attempt_number, error)
        self.drop()

    def drop(self) -> None:
        """Forget the connection (terminated): the next attempt opens a new one."""
        if self._conn is not None and not self._conn.is_closed():
            self._conn.terminate()
        self._conn = None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


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


async def caught_up(consumer: AIOKafkaConsumer) -> bool:
    """Whether every assigned partition is read to its end (no assignment yet: not)."""
    assignment = consumer.assignment()
    if not assignment:
        return False
    ends = await consumer.end_offsets(list(assignment))
    for tp in assignment:
        if await consumer.position(tp) < ends[tp]:
            return False
    return True


async def seek_to_stored(
    consumer: AIOKafkaConsumer,
    assigned: Collection[TopicPartition],
    saved: Mapping[tuple[str, int], int],
) -> dict[TopicPartition, int]:
    """Seek each of ``assigned`` to its position stored with the rows (``saved``: (topic,
    partition) -> next offset); returns the seeks made.

    A stored position older than the partition's earliest retained offset means messages
    the database had (it was restored, say) are gone from Kafka: said loudly, then the
    partition resumes from its earliest offset. One past the log's end (the topic was
    recreated) is left to Kafka's committed offset. No stored position: the same."""
    known = [tp for tp in assigned if (tp.topic, tp.partition) in saved]
    if not known:
        return {}
    earliest = await consumer.beginning_offsets(known)
    ends = await consumer.end_offsets(known)
    seeks: dict[TopicPartition, int] = {}
    for tp in sorted(known):
        position = saved[(tp.topic, tp.partition)]
        if position < earliest[tp]:
            log.error(
                "%s[%d]: the database has read up to offset %d, but Kafka keeps only "
                "offsets %d and later: messages %d..%d are gone and cannot be re-read",
                tp.topic,
                tp.partition,
                position,
                earliest[tp],
                position,
                earliest[tp] - 1,
            )
            position = earliest[tp]
        elif position > ends[tp]:
            log.warning(
                "%s[%d]: stored position %d is past the log's end %d (a recreated "
                "topic?): resuming from Kafka's committed offset",
                tp.topic,
                tp.partition,
                position,
                ends[tp],
            )
            continue
        consumer.seek(tp, position)
        seeks[tp] = position
    log.info(
        "resumed %d partition(s) from the database's positions: %s",
        len(seeks),
        ", ".join(f"{tp.topic}[{tp.partition}]@{o}" for tp, o in seeks.items()),
    )
    return seeks

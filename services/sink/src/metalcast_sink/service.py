"""The sink's consume → write → commit → publish loop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeVar
from urllib.parse import urlsplit

import asyncpg
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import KafkaError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
)

from metalcast_core import (
    BATCH_LOADED,
    TICKS_DLQ,
    BatchLoaded,
    DeadLetter,
    tick_problem,
    utcnow,
)
from metalcast_sink.config import SinkSettings
from metalcast_sink.consuming import (
    DB_UNAVAILABLE,
    Connect,
    RetryingConnection,
    caught_up,
    commit_owned,
    dead_letter,
    seek_to_stored,
)
from metalcast_sink.decoding import decode_values
from metalcast_sink.writer import (
    PublishedSince,
    TickRows,
    find_refused,
    load_positions,
    mark_published,
    relay_stale,
    write_batch,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Record: TypeAlias = ConsumerRecord[bytes, bytes]
# Records fetched and decoded in one stretch, between turns of the writer.
_SLICE = 1_000

# Errors that mean a tick's values are refused by the database: isolate and dead-letter it.
DATA_REJECTED: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
)


@dataclass(frozen=True)
class Decoded:
    """A batch ready to store: the ticks as rows, the record each row came from, dead
    letters, and the offsets to commit after it."""

    rows: TickRows
    records: Sequence[Record]
    dead: list[DeadLetter]
    offsets: dict[TopicPartition, int]
    received: int

    @classmethod
    def join(cls, parts: Sequence[Decoded]) -> Decoded:
        """Consecutive slices as one batch (the rows with their hourly picks)."""
        offsets: dict[TopicPartition, int] = {}
        for part in parts:
            offsets.update(part.offsets)  # later slices hold later offsets
        return cls(
            TickRows.concat([p.rows for p in parts]),
            [r for p in parts for r in p.records] if len(parts) > 1 else parts[0].records,
            [d for p in parts for d in p.dead],
            offsets,
            sum(p.received for p in parts),
        )


@dataclass
class SinkStats:
    batches: int = 0
    ticks_received: int = 0
    rows_inserted: int = 0
    dead_lettered: int = 0
    relayed: int = 0  # outbox events published by the relay, not right after their commit
    db_retries: int = 0
    decode_s: float = 0.0  # time spent decoding records into rows, dead letters included
    write_s: float = 0.0  # time spent writing batches to PostgreSQL (their transactions)
    # While the database is unreachable: since when (Unix time) and the last error.
    db_unavailable_since: float | None = None
    db_error: str | None = None


class Sink:
    def __init__(
        self,
        settings: SinkSettings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        connect: Connect,
        known: Collection[str] | None = None,
        prepare: Callable[[asyncpg.Connection], Awaitable[object]] | None = None,
        published_since: PublishedSince | None = None,
    ) -> None:
        """``known``: the symbols to accept (the instrument catalogue, refreshed by the
        composition root); by default ``settings.known_symbols``. ``prepare``: run on the
        database (retried while it is unreachable) before the first batch is read, e.g. the
        catalogue's first load. ``published_since`` reads the batch-loaded topic back (see
        :func:`relay_stale`); without it, an event left unmarked by a crash may be published
        twice."""
        self._settings = settings
        self._published_since = published_since
        self._consumer = consumer
        self._producer = producer
        self._connect = connect
        cfg = settings.sink
        self._db = RetryingConnection(
            connect,
            cfg.db_retry_initial_s,
            cfg.db_retry_max_s,
            on_error=self._on_db_error,
            on_answer=self._db_answered,
        )
        self._known = frozenset(settings.known_symbols) if known is None else known
        self._prepare = prepare
        self._dlq_topic = settings.kafka.topic_name(TICKS_DLQ)
        self._loaded_topic = settings.kafka.topic_name(BATCH_LOADED)
        self.stats = SinkStats()
        # Called after each stored batch with its write time (s) and its dead letters: the
        # metrics (metalcast_sink.observe) hook in here.
        self.on_stored: Callable[[float, Sequence[DeadLetter]], None] | None = None
        self._published: list[uuid.UUID] = []  # events published, not yet marked so
        self._finishing: asyncio.Task[None] | None = None  # the last batch's Kafka side
        self._writer_waits = asyncio.Event()  # set while the writer waits for a batch
        # Set when run() ends: a rebalance waiting for the database gives up, so that the
        # consumer (which waits for its listener) can stop.
        self._ended = asyncio.Event()
        # Clear while a rebalance is under way (with :meth:`listener`): nothing is fetched
        # and "caught up" is not decided until each partition is at its stored position.
        self._settled = asyncio.Event()
        self._settled.set()

    async def run(self, stop: asyncio.Event | None = None, until_idle: bool = False) -> SinkStats:
        """Consume until ``stop`` is set or, with ``until_idle``, until caught up."""
        stop = stop or asyncio.Event()
        try:
            if self._prepare is not None:
                await self._with_db(self._prepare)
            await self._with_db(self._publish_outbox)
            # Two stages: while one batch is written, the next is fetched and decoded, so
            # PostgreSQL's work and ours overlap. One batch at most waits in between; the
            # Kafka side of a batch (dead letters, offsets, its event) runs while the next
            # is written.
            decoded: asyncio.Queue[Decoded | None] = asyncio.Queue(maxsize=1)
            reader = asyncio.create_task(self._read(decoded, stop, until_idle))
            relay = asyncio.create_task(self._relay(stop))
            try:
                while True:
                    self._writer_waits.set()
                    batch = await decoded.get()
                    self._writer_waits.clear()
                    if batch is None:
                        break
                    await self.store(batch)
                if self._finishing is not None:
                    await self._finishing
                if self._published:
                    ids = self._published
                    await self._with_db(lambda conn: mark_published(conn, *ids))
                    self._published = []
            finally:
                for task in (reader, relay):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if self._finishing is not None and not self._finishing.done():
                    self._finishing.cancel()  # leaving on an error: the batch is re-read
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._finishing
        finally:
            self._ended.set()
            await self._db.close()
        return self.stats

    async def _read(
        self, out: asyncio.Queue[Decoded | None], stop: asyncio.Event, until_idle: bool
    ) -> None:
        """Fetch and decode in slices, handing the writer a batch whenever it is free.

        Slices keep each stretch of our CPU work short, so the writer issues its next
        statement soon after PostgreSQL answers: PostgreSQL and we work at the same time.
        While the writer is busy, slices gather into one batch (up to ``max_batch``, then one
        batch waits for it): the busier the database, the larger the batches and the fewer
        the transactions; an idle writer gets what there is at once.
        """
        gathered: list[Decoded] = []
        size = 0
        try:
            while not stop.is_set():
                if not self._settled.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._settled.wait(), self._settings.sink.batch_timeout_ms / 1000
                        )
                    continue
                fetched = await self._consumer.getmany(
                    timeout_ms=0 if gathered else self._settings.sink.batch_timeout_ms,
                    max_records=min(_SLICE, self._settings.sink.max_batch),
                )
                if any(fetched.values()):
                    part = self.decode(fetched, picks=False)
                    gathered.append(part)
                    size += part.received
                    await asyncio.sleep(0)  # the writer's turn
                    if not self._writer_waits.is_set() and size < self._settings.sink.max_batch:
                        continue  # the writer is busy: gather
                elif not gathered:
                    if until_idle and await self._caught_up():
                        break
                    continue
                await out.put(self._join(gathered))
                gathered, size = [], 0
            if gathered:
                await out.put(self._join(gathered))
        except BaseException:
            # Leaving early (an error, or cancelled because the writer stopped): never wait on
            # a full queue; what was not written is re-read, its offsets not committed.
            while not out.empty():
                out.get_nowait()
            out.put_nowait(None)
            raise
        await out.put(None)

    def decode(
        self, fetched: Mapping[TopicPartition, Sequence[Record]], picks: bool = True
    ) -> Decoded:
        """Records as fetched (per partition, in offset order) into a batch to store: ticks
        the contract accepts and the business checks pass become rows, the others dead
        letters with their reason. ``picks=False``: a slice for :meth:`Decoded.join`."""
        started = time.perf_counter()
        records = list(itertools.chain.from_iterable(fetched.values()))
        offsets = {tp: batch[-1].offset + 1 for tp, batch in fetched.items() if batch}
        decoded = decode_values([r.value for r in records])
        now = utcnow()
        problems = [tick_problem(t, self._known, now) for t in decoded.ticks]
        kept = decoded.kept
        dead = [dead_letter(records[i], reason) for i, reason in decoded.refused]
        ticks = decoded.ticks
        if any(problems):
            positions = kept if kept is not None else range(len(records))
            dead += [
                dead_letter(records[i], problem)
                for i, problem in zip(positions, problems, strict=True)
                if problem is not None
            ]
            ticks = [t for t, problem in zip(ticks, problems, strict=True) if problem is None]
            kept = [i for i, problem in zip(positions, problems, strict=True) if problem is None]
        if dead:
            log.warning("%d message(s) dead-lettered, e.g. %s", len(dead), dead[0].reason)
        rows = TickRows.of(ticks, picks=picks)
        of_rows = records if kept is None else [records[i] for i in kept]
        self.stats.decode_s += time.perf_counter() - started
        return Decoded(rows, of_rows, dead, offsets, len(records))

    def _join(self, parts: Sequence[Decoded]) -> Decoded:
        started = time.perf_counter()
        joined = Decoded.join(parts)
        self.stats.decode_s += time.perf_counter() - started
        return joined

    async def store(self, batch: Decoded) -> None:
        """Dead-letter what failed, write the batch with its positions, then (while the next
        batch is written) commit Kafka's offsets and publish its event."""
        rows, dead = batch.rows, list(batch.dead)
        # Dead letters are durable before the positions, stored with the rows, move past them
        # (a crash in between sends them again: at least once, like the ticks).
        await self._send_dead(dead)
        # Events published after earlier batches: marked so in this batch's transaction.
        published = list(self._published)
        positions = {(tp.topic, tp.partition): offset for tp, offset in batch.offsets.items()}
        started = time.perf_counter()

        def write(conn: asyncpg.Connection) -> Awaitable[BatchLoaded | None]:
            return write_batch(conn, rows, len(dead), published, positions)

        try:
            event = await self._with_db(write)
        except DATA_REJECTED as exc:
            log.warning("batch refused by the database (%s); isolating the bad ticks", exc)
            refused = await self._with_db(lambda conn: find_refused(conn, rows))
            bad = {i for i, _ in refused}
            letters = [
                dead_letter(batch.records[i], f"refused by the database: {reason}")
                for i, reason in refused
            ]
            await self._send_dead(letters)
            dead += letters
            rows = rows.take([i for i in range(len(rows)) if i not in bad])
            event = await self._with_db(write)
        took = time.perf_counter() - started
        self.stats.write_s += took
        self._published = self._published[len(published) :]
        # The Kafka side of this batch runs while the next batch is written; one at a time,
        # in order, so offsets only move forward.
        if self._finishing is not None:
            await self._finishing
        self._finishing = asyncio.create_task(self._finish(batch.offsets, event))
        self.stats.batches += 1
        self.stats.ticks_received += batch.received
        self.stats.rows_inserted += event.rows_inserted if event else 0
        self.stats.dead_lettered += len(dead)
        if self.on_stored is not None:
            self.on_stored(took, dead)

    async def _send_dead(self, dead: Sequence[DeadLetter]) -> None:
        if dead:
            sends = [
                await self._producer.send(self._dlq_topic, TICKS_DLQ.encode(d), key=b"sink")
                for d in dead
            ]
            await asyncio.gather(*sends)

    async def _finish(self, offsets: dict[TopicPartition, int], event: BatchLoaded | None) -> None:
        """After the database commit: Kafka's offsets and the batch's event. Neither may hold
        the writer up for long: the positions stored with the rows decide where reading
        resumes (Kafka's offsets only follow, for lag monitoring), and an event not sent now
        stays in the outbox, where the relay sends it (once) later."""
        try:
            await asyncio.wait_for(
                asyncio.gather(commit_owned(self._consumer, offsets), self._announce(event)),
                self._settings.sink.kafka_side_timeout_s,
            )
        except (TimeoutError, KafkaError) as exc:
            log.warning(
                "Kafka side of a batch not done (%s: %s): offsets follow with a later batch; "
                "its event stays in the outbox for the relay",
                type(exc).__name__,
                exc,
            )
            return
        if event is not None:
            self._published.append(event.batch_id)

    async def _announce(self, event: BatchLoaded | None) -> None:
        if event is not None:
            await self._producer.send_and_wait(
                self._loaded_topic, BATCH_LOADED.encode(event), key=str(event.batch_id).encode()
            )

    async def _relay(self, stop: asyncio.Event) -> None:
        """Keep the outbox drained while running: events left unpublished (a lost
        acknowledgement) go out within ``relay_every_s + relay_after_s``, not at the next
        restart. Its own connection; errors are logged and tried again next time."""
        cfg = self._settings.sink
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), cfg.relay_every_s)
            if stop.is_set():
                return
            try:
                conn = await self._connect()
                try:
                    sent = list(self._published)  # published, to be marked with the next batch
                    if sent:
                        await mark_published(conn, *sent)
                    relayed = await relay_stale(
                        conn, cfg.relay_after_s, self._announce, already=self._published_since
                    )
                finally:
                    await conn.close()
            except Exception as exc:  # the next round tries again; the batch is safe
                log.warning("outbox relay failed, will retry: %s: %s", type(exc).__name__, exc)
                if isinstance(exc, DB_UNAVAILABLE):  # seen even while no batch comes
                    self._db_unavailable(exc)
                continue
            self._db_answered()
            if relayed:
                self.stats.relayed += len(relayed)
                log.warning("relayed %d batch-loaded event(s) left in the outbox", len(relayed))

    async def _publish_outbox(self, conn: asyncpg.Connection) -> None:
        """At start: every event left unpublished or unmarked by the last run, once."""
        while sent := await relay_stale(
            conn, 0.0, self._announce, limit=1_000, already=self._published_since
        ):
            log.info("published %d batch-loaded event(s) left in the outbox", len(sent))

    def _retrying(self) -> AsyncRetrying:
        return self._db.retrying()

    async def _with_db(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``work`` on the connection, reconnecting and retrying while the DB is down."""
        return await self._db.run(work)

    def _on_db_error(self, state: RetryCallState) -> None:
        self.stats.db_retries += 1
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        if isinstance(error, DB_UNAVAILABLE):
            self._db_unavailable(error)
        log.warning(
            "database %s unavailable (attempt %d, next in %.1f s), the batch is kept: %s",
            _server_of(self._settings.postgres.url),
            state.attempt_number,
            wait,
            f"{type(error).__name__}: {error}" if error is not None else "no error recorded",
        )

    def _db_unavailable(self, error: BaseException) -> None:
        if self.stats.db_unavailable_since is None:
            self.stats.db_unavailable_since = time.time()
        self.stats.db_error = f"{type(error).__name__}: {error}"

    def _db_answered(self) -> None:
        self.stats.db_unavailable_since = None
        self.stats.db_error = None

    def listener(self) -> ConsumerRebalanceListener:
        """Subscribe with this: on every assignment, each partition resumes from the position
        stored with the rows (``pipeline.consumer_positions``), not from Kafka's commit."""
        self._settled.clear()  # until the first assignment is settled
        return _ResumeFromDatabase(self)

    def rebalancing(self) -> None:
        """A rebalance has begun: fetch nothing until :meth:`resume` has placed the new
        assignment."""
        self._settled.clear()

    async def resume(self, assigned: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        """Seek each of ``assigned`` to its stored position; returns the seeks made. Fetching
        (paused by :meth:`rebalancing`) goes on when this returns, whatever the outcome.

        A stored position older than the partition's earliest retained offset means messages
        the database had (it was restored, say) are gone from Kafka: said loudly, then the
        partition resumes from its earliest offset. One past the log's end (the topic was
        recreated) is left to Kafka's committed offset. No stored position: the same."""
        try:
            return await self._seek_to_stored(assigned)
        finally:
            self._settled.set()

    async def _seek_to_stored(
        self, assigned: Collection[TopicPartition]
    ) -> dict[TopicPartition, int]:
        if not assigned:
            return {}
        topics = {tp.topic for tp in assigned}

        async def load() -> dict[tuple[str, int], int]:
            conn = await self._connect()  # its own: the writer may be using the main one
            try:
                return await load_positions(conn, topics)
            finally:
                await conn.close()

        async def load_until_done() -> dict[tuple[str, int], int]:
            async for attempt in self._retrying():
                with attempt:
                    saved = await load()
                    self._db_answered()
                    return saved
            raise AssertionError("unreachable")

        loading = asyncio.ensure_future(load_until_done())
        ended = asyncio.ensure_future(self._ended.wait())
        await asyncio.wait({loading, ended}, return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        if not loading.done():  # stopping while the database is away: nothing is read
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            return {}
        return await seek_to_stored(self._consumer, assigned, loading.result())

    async def _caught_up(self) -> bool:
        return self._settled.is_set() and await caught_up(self._consumer)


class _ResumeFromDatabase(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # A batch in hand commits its positions with its rows, or is re-read.
        self._sink.rebalancing()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._sink.resume(assigned)


def _server_of(url: str) -> str:
    """``host:port/database`` of a PostgreSQL URL, without the credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path}"

"""Composition root of the sink: builds the clients from settings and runs the loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from metalcast_core import (
    BARS,
    MACRO,
    TICKS,
    Catalogue,
    Event,
    MacroObservation,
    PriceBar,
    Topic,
    connect,
    ensure_topics,
    make_consumer,
    make_producer,
    serve_status,
    wait_for_kafka,
)
from metalcast_sink.bars import bar_sink
from metalcast_sink.catalogue import keep_fresh, load_into
from metalcast_sink.config import SinkSettings
from metalcast_sink.loading import LoadStats, TableSink
from metalcast_sink.macro import macro_sink
from metalcast_sink.observe import SinkObserver, watch_lag
from metalcast_sink.outbox import batch_ids_published_since
from metalcast_sink.service import Sink, SinkStats

E = TypeVar("E", bound=Event)


@contextlib.asynccontextmanager
async def _catalogue(settings: SinkSettings) -> AsyncIterator[Catalogue]:
    """The instrument catalogue (plus ``settings.known_symbols``), kept fresh while used. Its
    first load is the sink's own first step on the database (``prepare``), retried while the
    database is unreachable."""
    catalogue = Catalogue(extra=settings.known_symbols)
    done = asyncio.Event()
    task = asyncio.create_task(
        keep_fresh(
            catalogue, lambda: connect(settings.postgres), settings.sink.catalogue_refresh_s, done
        )
    )
    try:
        yield catalogue
    finally:
        done.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_sink(
    settings: SinkSettings,
    stop: asyncio.Event | None = None,
    until_idle: bool = False,
    consumer_options: Mapping[str, Any] | None = None,
) -> SinkStats:
    """Consume until ``stop`` (or, ``until_idle``, until caught up). A long-running sink
    serves ``/metrics`` and ``/healthz`` on ``metrics_host:metrics_port`` meanwhile (a
    one-shot ``until_idle`` drain does not)."""
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
        async with _catalogue(settings) as known:
            sink = Sink(
                settings,
                consumer,
                producer,
                lambda: connect(settings.postgres),
                known,
                prepare=lambda conn: load_into(known, conn),
                published_since=lambda since: batch_ids_published_since(settings.kafka, since),
            )
            cfg = settings.sink
            seen = SinkObserver(sink.stats)
            sink.on_stored = seen.stored
            consumer.subscribe([settings.kafka.topic_name(TICKS)], listener=sink.listener())
            await consumer.start()
            try:
                # What start-up built lives as long as the process: out of the collector's
                # sight, so that its passes over the many short-lived objects per batch stay
                # short.
                gc.collect()
                gc.freeze()
                async with serve_status(
                    "sink",
                    seen.registry,
                    lambda: seen.health(cfg.stall_after_s),
                    cfg.metrics_host,
                    0 if until_idle else cfg.metrics_port,
                ) as server:
                    # The lag is read only for a server to show (not during a one-shot drain).
                    lag = None
                    if server is not None:
                        lag = asyncio.create_task(watch_lag(consumer, seen, cfg.lag_every_s))
                    try:
                        return await sink.run(stop=stop, until_idle=until_idle)
                    finally:
                        if lag is not None:
                            lag.cancel()
                            with contextlib.suppress(asyncio.CancelledError):
                                await lag
            finally:
                await consumer.stop()
    finally:
        await producer.stop()


async def _run_table(
    settings: SinkSettings,
    topic: Topic[E],
    group_id: str,
    build: Callable[[AIOKafkaConsumer, AIOKafkaProducer, Catalogue], TableSink[E]],
    stop: asyncio.Event | None,
    until_idle: bool,
    consumer_options: Mapping[str, Any] | None,
) -> LoadStats:
    """A table loop (:mod:`metalcast_sink.loading`) on ``topic`` in ``group_id``."""
    await wait_for_kafka(settings.kafka)  # a broker restarting: wait rather than exit
    await ensure_topics(settings.kafka)
    consumer = make_consumer(
        settings.kafka,
        [],  # subscribed below, with the listener that resumes from the database
        group_id=group_id,
        max_poll_records=settings.sink.max_batch,
        **(consumer_options or {}),
    )
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        async with _catalogue(settings) as known:
            sink = build(consumer, producer, known)
            consumer.subscribe([settings.kafka.topic_name(topic)], listener=sink.listener())
            await consumer.start()
            try:
                return await sink.run(stop=stop, until_idle=until_idle)
            finally:
                await consumer.stop()
    finally:
        await producer.stop()


async def run_bar_sink(
    settings: SinkSettings,
    stop: asyncio.Event | None = None,
    until_idle: bool = False,
    consumer_options: Mapping[str, Any] | None = None,
) -> LoadStats:
    """Consume ``prices.bars.v1`` into ``prices.bars`` (``metalcast sink bars``)."""

    def build(
        consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, known: Catalogue
    ) -> TableSink[PriceBar]:
        return bar_sink(
            settings,
            consumer,
            producer,
            lambda: connect(settings.postgres),
            known,
            prepare=lambda conn: load_into(known, conn),
        )

    return await _run_table(
        settings, BARS, settings.sink.bars_group_id, build, stop, until_idle, consumer_options
    )


async def run_macro_sink(
    settings: SinkSettings,
    stop: asyncio.Event | None = None,
    until_idle: bool = False,
    consumer_options: Mapping[str, Any] | None = None,
) -> LoadStats:
    """Consume ``macro.observations.v1`` into ``macro.observations`` (``metalcast sink
    macro``)."""

    def build(
        consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, known: Catalogue
    ) -> TableSink[MacroObservation]:
        return macro_sink(settings, consumer, producer, lambda: connect(settings.postgres))

    return await _run_table(
        settings, MACRO, settings.sink.macro_group_id, build, stop, until_idle, consumer_options
    )

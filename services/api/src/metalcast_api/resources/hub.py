"""One Kafka consumer per process, fanned out to the browsers' Server-Sent Events streams.

The consumer has no group (every API process sees every message) and starts at the end of
``prices.ticks.v1``, ``models.trained.v1`` and ``models.production.v1``: the stream relays
what happens from now on. Each client gets a bounded queue; a slow client loses its oldest
events, never blocks the others. ``models.trained.v1`` events also go to
``on_models_trained`` and ``models.production.v1`` events to ``on_production_changed`` (the
forecast cache: a moved pointer is read again and its version preloaded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer

from metalcast_api.metrics import ApiMetrics
from metalcast_core import (
    MODELS_TRAINED,
    PRODUCTION_CHANGED,
    TICKS,
    DecodeError,
    KafkaSettings,
    ModelsTrained,
    ProductionChanged,
    make_consumer,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamEvent:
    event: str  # "tick" | "models" | "production"
    data: dict[str, Any]
    symbols: frozenset[str] = frozenset()


@dataclass(eq=False)
class Subscriber:
    symbols: frozenset[str] | None
    queue: asyncio.Queue[StreamEvent] = field(default_factory=asyncio.Queue)
    dropped: int = 0


class EventHub:
    def __init__(
        self,
        kafka: KafkaSettings,
        metrics: ApiMetrics,
        buffer: int,
        on_models_trained: Callable[[ModelsTrained], Awaitable[None]] | None = None,
        on_production_changed: Callable[[ProductionChanged], Awaitable[None]] | None = None,
    ) -> None:
        self._kafka = kafka
        self._metrics = metrics
        self._buffer = buffer
        self._on_models_trained = on_models_trained
        self._on_production_changed = on_production_changed
        self._subscribers: set[Subscriber] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.started = asyncio.Event()

    @contextlib.asynccontextmanager
    async def subscribe(self, symbols: frozenset[str] | None) -> AsyncIterator[Subscriber]:
        sub = Subscriber(symbols, asyncio.Queue(self._buffer))
        self._subscribers.add(sub)
        self._metrics.stream_clients.inc()
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)
            self._metrics.stream_clients.dec()

    def publish(self, item: StreamEvent) -> None:
        self._metrics.stream_events.labels(item.event).inc()
        for sub in list(self._subscribers):
            if sub.symbols is not None and item.symbols and not (item.symbols & sub.symbols):
                continue
            if sub.queue.full():
                sub.queue.get_nowait()
                sub.dropped += 1
            sub.queue.put_nowait(item)

    async def ping(self, timeout_s: float) -> str | None:
        """``None`` if the brokers answer a metadata request; otherwise why not."""
        consumer = self._consumer
        if consumer is None or not self.started.is_set():
            return "the stream's Kafka consumer is not connected"
        try:
            async with asyncio.timeout(timeout_s):
                await consumer.topics()
        except Exception as exc:
            return f"Kafka does not answer: {type(exc).__name__}: {exc}"
        return None

    async def run(self) -> None:
        """Consume until cancelled; reconnects with backoff when Kafka is away."""
        delay = 0.5
        while True:
            consumer = make_consumer(
                self._kafka,
                [
                    self._kafka.topic_name(TICKS),
                    self._kafka.topic_name(MODELS_TRAINED),
                    self._kafka.topic_name(PRODUCTION_CHANGED),
                ],
                group_id=None,
                auto_offset_reset="latest",
                metadata_max_age_ms=30_000,
            )
            try:
                await consumer.start()
                self._consumer = consumer
                # Position at the end of every partition now, so "from now on" is now.
                for tp in consumer.assignment():
                    await consumer.position(tp)
                self.started.set()
                delay = 0.5
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("stream consumer failed (%s); retrying in %.1fs", exc, delay)
            finally:
                self.started.clear()
                self._consumer = None
                with contextlib.suppress(Exception):
                    await consumer.stop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        ticks_topic = self._kafka.topic_name(TICKS)
        models_topic = self._kafka.topic_name(MODELS_TRAINED)
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            for tp, records in batches.items():
                for record in records:
                    if tp.topic == ticks_topic:
                        self._relay_tick(record.value)
                    elif tp.topic == models_topic:
                        self._relay_models(record.value)
                    else:
                        self._relay_production(record.value)

    def _relay_tick(self, value: bytes | None) -> None:
        try:
            tick = TICKS.decode(value)
        except DecodeError:
            return  # the sink dead-letters it; the stream just skips it
        data = {
            "symbol": tick.symbol,
            "price": tick.price,
            "currency": tick.currency,
            "instrument": tick.instrument,
            "source": tick.source,
            "observed_at": tick.observed_at.isoformat(),
        }
        self.publish(StreamEvent("tick", data, frozenset({tick.symbol})))

    def _relay_models(self, value: bytes | None) -> None:
        try:
            event = MODELS_TRAINED.decode(value)
        except DecodeError:
            return
        data = {
            "run_id": event.run_id,
            "versions": event.versions,
            "promoted": event.promoted,
            "failed": event.failed,
            "finished_at": event.finished_at.isoformat(),
        }
        if event.status is not None:
            data["status"] = event.status
        if event.decisions:
            data["decisions"] = event.decisions
        self.publish(StreamEvent("models", data, frozenset(event.versions)))
        if self._on_models_trained is not None:
            self._spawn(self._on_models_trained(event), f"models.trained.v1 run {event.run_id}")

    def _relay_production(self, value: bytes | None) -> None:
        try:
            event = PRODUCTION_CHANGED.decode(value)
        except DecodeError:
            return
        data = {
            "symbol": event.symbol,
            "action": event.action,
            "from_version": event.from_version,
            "to_version": event.to_version,
            "pinned": event.pinned,
            "changed_by": event.changed_by,
            "reason": event.reason,
            "changed_at": event.changed_at.isoformat(),
        }
        self.publish(StreamEvent("production", data, frozenset({event.symbol})))
        if self._on_production_changed is not None:
            what = f"models.production.v1 {event.action} {event.symbol} v{event.to_version}"
            self._spawn(self._on_production_changed(event), what)

    def _spawn(self, work: Awaitable[None], what: str) -> None:
        # In a task of its own: loading models takes seconds, the stream must not wait.
        task = asyncio.create_task(self._handle(work, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _handle(work: Awaitable[None], what: str) -> None:
        try:
            await work
        except Exception:
            log.exception("handling %s failed", what)

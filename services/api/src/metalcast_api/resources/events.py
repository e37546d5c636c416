"""``models.production.v1`` from the API: published after each pointer change it makes.

One Kafka producer per process, started at the first change (the API serves without Kafka).
A change that cannot be announced within ``timeout_s`` is still done: it is logged, the
caller is told, and other API processes see it through their pointer checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer

from metalcast_core import PRODUCTION_CHANGED, KafkaSettings, ensure_topics, make_producer
from metalcast_models.registry import PointerMove

log = logging.getLogger(__name__)


class ProductionEvents:
    def __init__(self, kafka: KafkaSettings, timeout_s: float) -> None:
        self._kafka = kafka
        self._timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            await ensure_topics(self._kafka)  # like every producer of ours
            producer = make_producer(self._kafka)
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def publish(self, move: PointerMove) -> bool:
        """Send the change (key: the symbol); ``False`` if Kafka did not take it in time."""
        try:
            async with self._lock, asyncio.timeout(self._timeout_s):
                producer = await self._started()
                await producer.send_and_wait(
                    self._kafka.topic_name(PRODUCTION_CHANGED),
                    PRODUCTION_CHANGED.encode(move.event()),
                    key=move.symbol.encode(),
                )
        except Exception as exc:
            log.warning(
                "%s %s v%s: models.production.v1 not published: %s: %s",
                move.action,
                move.symbol,
                move.to_version,
                type(exc).__name__,
                exc,
            )
            return False
        return True

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

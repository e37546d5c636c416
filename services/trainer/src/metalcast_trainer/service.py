"""The trainer's loop: consume ``pipeline.batch-loaded.v1``, coalesce bursts, train once on
the newest data, commit the offsets, publish ``models.trained.v1``."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from aiokafka import ConsumerRecord

from metalcast_core import (
    BATCH_LOADED,
    MODELS_TRAINED,
    PRODUCTION_CHANGED,
    TRAIN_REQUESTED,
    BatchLoaded,
    DecodeError,
    KafkaSettings,
    ModelsTrained,
    TrainRequested,
)
from metalcast_models.registry import PointerMove
from metalcast_trainer.config import TrainerSettings
from metalcast_trainer.runner import RunReport

log = logging.getLogger(__name__)


class EventSource(Protocol):
    """What the loop needs of a Kafka consumer (aiokafka's; a fake in unit tests)."""

    async def getmany(
        self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[Any, list[ConsumerRecord[bytes, bytes]]]: ...

    async def commit(self) -> None: ...


class Sender(Protocol):
    """What publishing needs of a Kafka producer."""

    async def send_and_wait(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> Any: ...


class Runner(Protocol):
    """What the loop needs of :class:`TrainingRunner`."""

    async def wants(self, events: Sequence[BatchLoaded]) -> str | None: ...

    async def run(
        self, trigger: str, batch_id: uuid.UUID | None = None, events: int = 0
    ) -> RunReport: ...


class LoopObserver(Protocol):
    """What the loop tells its metrics (metalcast_trainer.observe.TrainerObserver)."""

    def polled(self) -> None: ...

    def received(self, events: int, skipped: Mapping[str, int]) -> None: ...

    def run_started(self) -> None: ...

    def run_finished(self, report: RunReport | None) -> None: ...


class Valuing(Protocol):
    """What the loop needs of the valuation retrain (:class:`ValuationTrainer`)."""

    async def wants(self, events: Sequence[BatchLoaded]) -> str | None: ...

    async def run(
        self, trigger: str, batch_id: uuid.UUID | None = None, events: int = 0
    ) -> RunReport: ...


class Dispatching(Protocol):
    """What dispatching needs of the runner (:class:`TrainingRunner`)."""

    def take_instruments(self) -> tuple[list[str], bool]: ...


class Trainer:
    def __init__(
        self,
        settings: TrainerSettings,
        consumer: EventSource,
        producer: Sender,
        runner: Runner,
        dispatcher: Dispatching | None = None,
        observer: LoopObserver | None = None,
        valuation: Valuing | None = None,
    ) -> None:
        """``dispatcher``: the runner, when instruments are dispatched to
        ``pipeline.train-requested.v1`` (``trainer.dispatch_instruments``) rather than trained
        in this run. ``valuation``: the gold valuation model's retrain (docs/valuation.md),
        run first when the events touched gold or a macro series."""
        self._settings = settings
        self._consumer = consumer
        self._producer = producer
        self._runner = runner
        self._observer = observer
        self._dispatcher = dispatcher
        self._valuation = valuation
        self._valuing: tuple[BatchLoaded, int] | None = None  # (newest event, events)
        self.runs: list[RunReport] = []

    async def serve(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self._observer is not None:
                self._observer.polled()
            fetched = await self._consumer.getmany(timeout_ms=500)
            records = [r for batch in fetched.values() for r in batch]
            if not records:
                continue
            # A burst trains once: wait briefly, then take everything that has arrived.
            await asyncio.sleep(self._settings.trainer.coalesce_s)
            more = await self._consumer.getmany(timeout_ms=0)
            records += [r for batch in more.values() for r in batch]
            await self.handle(records)

    async def handle(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> RunReport | None:
        events = _decode(records)
        obs = self._observer
        bad = len(records) - len(events)
        undecodable = {"undecodable": bad} if bad else {}
        if not events:
            if obs is not None:
                obs.received(len(records), undecodable)
            await self._consumer.commit()
            return None
        newest = max(events, key=lambda e: e.loaded_at)
        if self._valuation is not None and (why := await self._valuation.wants(events)):
            log.info("the valuation model retrains after this batch: %s", why)
            self._valuing = (newest, len(events))
        skip = await self._runner.wants(events)
        if skip is not None:
            log.info("%d batch-loaded event(s) need no training: %s", len(events), skip)
            if obs is not None:
                obs.received(len(records), {**undecodable, "no_new_window": len(events)})
            await self._commit()
            return None
        if obs is not None:
            obs.received(len(records), undecodable)
        if self._dispatcher is not None:
            instruments, metals_left = self._dispatcher.take_instruments()
            await request_training(self._producer, self._settings.kafka, instruments, newest)
            if not metals_left:
                await self._commit()
                return None
        if obs is not None:
            obs.run_started()
        report: RunReport | None = None
        try:
            report = await self._runner.run("batch-loaded", newest.batch_id, len(events))
        finally:
            if obs is not None:
                obs.run_finished(report)  # None: the run itself raised (it was not recorded)
        # Offsets move after the run is recorded: a crash mid-run trains again on restart.
        await self._commit()
        await self.publish(report, newest)
        return report

    async def _commit(self) -> None:
        """Commit the offsets; first, when the batch asked for it, retrain the valuation model
        (after the metals: their latency is untouched), and announce its run after."""
        valuing, self._valuing = self._valuing, None
        valued = None
        if valuing is not None and self._valuation is not None:
            batch, count = valuing
            obs = self._observer
            if obs is not None:
                obs.run_started()
            try:
                valued = await self._valuation.run("batch-loaded", batch.batch_id, count)
            finally:
                if obs is not None:
                    obs.run_finished(valued)  # counted like any run (status, duration)
        await self._consumer.commit()
        if valued is not None and valuing is not None:
            await self.publish(valued, valuing[0])

    async def publish(self, report: RunReport, batch: BatchLoaded | None = None) -> None:
        await publish_report(self._producer, self._settings.kafka, report, batch)
        self.runs.append(report)


async def request_training(
    producer: Sender, kafka: KafkaSettings, symbols: Sequence[str], batch: BatchLoaded
) -> None:
    """One ``pipeline.train-requested.v1`` event per instrument (key: its symbol)."""
    topic = kafka.topic_name(TRAIN_REQUESTED)
    events = [
        TrainRequested(symbol=s, trigger_batch_id=batch.batch_id, last_hour=batch.last_hour)
        for s in symbols
    ]
    # Sent together (the producer batches them), all acknowledged before the caller commits.
    await asyncio.gather(
        *(
            producer.send_and_wait(topic, TRAIN_REQUESTED.encode(e), key=e.symbol.encode())
            for e in events
        )
    )
    if symbols:
        log.info("requested training of %d instrument(s): %s", len(symbols), ", ".join(symbols))


class InstrumentRunner(Protocol):
    def want(self, symbols: Sequence[str]) -> None: ...

    async def run(
        self, trigger: str, batch_id: uuid.UUID | None = None, events: int = 0
    ) -> RunReport: ...


class InstrumentTrainer:
    """Consumes ``pipeline.train-requested.v1`` (this instance's share of its partitions):
    the requests of one poll, a short wait and what came meanwhile train in one run (each
    symbol once), then the offsets are committed and ``models.trained.v1`` published."""

    def __init__(
        self,
        settings: TrainerSettings,
        consumer: EventSource,
        producer: Sender,
        runner: InstrumentRunner,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._producer = producer
        self._runner = runner
        self.runs: list[RunReport] = []
        self.trained: list[str] = []  # every symbol this instance trained, in order

    async def serve(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            fetched = await self._consumer.getmany(timeout_ms=500)
            records = [r for batch in fetched.values() for r in batch]
            if not records:
                continue
            await asyncio.sleep(self._settings.trainer.coalesce_s)
            more = await self._consumer.getmany(timeout_ms=0)
            records += [r for batch in more.values() for r in batch]
            await self.handle(records)

    async def handle(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> RunReport | None:
        requests: list[TrainRequested] = []
        for record in records:
            try:
                requests.append(TRAIN_REQUESTED.decode(record.value))
            except DecodeError as exc:
                log.error("skipping undecodable train request at offset %s: %s", record.offset, exc)
        symbols = sorted({r.symbol for r in requests})
        if not symbols:
            await self._consumer.commit()
            return None
        self._runner.want(symbols)
        newest = max(requests, key=lambda r: r.requested_at)
        report = await self._runner.run("train-requested", newest.trigger_batch_id, len(requests))
        await self._consumer.commit()
        await publish_report(self._producer, self._settings.kafka, report, None)
        self.runs.append(report)
        self.trained += symbols
        return report


async def publish_report(
    producer: Sender, kafka: KafkaSettings, report: RunReport, batch: BatchLoaded | None
) -> None:
    """Publish ``models.production.v1`` for every pointer the run moved, then
    ``models.trained.v1`` for the recorded run (key: the run id)."""
    await publish_moves(producer, kafka, report.moves)
    event = ModelsTrained(
        run_id=report.run_id,
        trigger_batch_id=batch.batch_id if batch else None,
        versions=report.versions,
        promoted=sorted(report.promoted),
        failed=report.failed,
        status=report.status,
        decisions=report.decisions,
    )
    await producer.send_and_wait(
        kafka.topic_name(MODELS_TRAINED),
        MODELS_TRAINED.encode(event),
        key=str(report.run_id).encode(),
    )


async def publish_moves(
    producer: Sender, kafka: KafkaSettings, moves: Sequence[PointerMove]
) -> None:
    """``models.production.v1`` for each pointer move (key: the symbol), sent together (the
    producer batches them: a run that moved 1,000 pointers does not wait for 1,000 round
    trips), all acknowledged before returning. A run moves a symbol's pointer at most once."""
    topic = kafka.topic_name(PRODUCTION_CHANGED)
    await asyncio.gather(
        *(
            producer.send_and_wait(
                topic, PRODUCTION_CHANGED.encode(move.event()), key=move.symbol.encode()
            )
            for move in moves
        )
    )


def _decode(records: Sequence[ConsumerRecord[bytes, bytes]]) -> list[BatchLoaded]:
    events = []
    for record in records:
        try:
            events.append(BATCH_LOADED.decode(record.value))
        except DecodeError as exc:
            # Nothing to dead-letter into: the event is only a trigger. Say so and go on.
            log.error(
                "skipping undecodable batch-loaded event at %s/%s@%s: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
    return events

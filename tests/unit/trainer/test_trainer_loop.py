"""The trainer's loop with fakes (no servers): bursts coalesce into one run, undecodable and
metal-free events never train, offsets are committed only after the run is recorded, and a
run's pointer moves are published before the run's own event."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRecord

from metalcast_core import (
    BATCH_LOADED,
    MODELS_TRAINED,
    PRODUCTION_CHANGED,
    BatchLoaded,
    KafkaSettings,
)
from metalcast_models.registry import PointerMove
from metalcast_trainer.config import TrainerSection, TrainerSettings
from metalcast_trainer.runner import RunReport
from metalcast_trainer.service import Trainer

HOUR = datetime(2026, 3, 2, 10, tzinfo=UTC)


def record(value: bytes, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="pipeline.batch-loaded.v1",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=(),
    )


def loaded(*symbols: str) -> bytes:
    return BATCH_LOADED.encode(
        BatchLoaded(
            symbols=list(symbols),
            first_hour=HOUR,
            last_hour=HOUR,
            rows_inserted=1,
            ticks_received=1,
        )
    )


class FakeConsumer:
    """Hands out queued batches of records; logs commits in the shared journal."""

    def __init__(
        self, batches: Sequence[Sequence[ConsumerRecord[bytes, bytes]]], journal: list[str]
    ):
        self.batches = [list(b) for b in batches]
        self.journal = journal
        self.drained = asyncio.Event()

    async def getmany(
        self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[Any, list[ConsumerRecord[bytes, bytes]]]:
        if self.batches:
            return {"tp": self.batches.pop(0)}
        self.drained.set()
        await asyncio.sleep(0)
        return {}

    async def commit(self) -> None:
        self.journal.append("commit")


class FakeProducer:
    def __init__(self, journal: list[str]) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.journal = journal

    async def send_and_wait(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> None:
        self.sent.append((topic, value, key))
        self.journal.append(f"send {topic}")


class FakeRunner:
    def __init__(self, journal: list[str], skip: str | None = None) -> None:
        self.journal = journal
        self.skip = skip
        self.calls: list[tuple[str, uuid.UUID | None, int]] = []

    async def wants(self, events: Sequence[BatchLoaded]) -> str | None:
        if all(not set(e.symbols) & {"XAU", "XAG", "XPT", "XPD"} for e in events):
            return "no metal in the batch"
        return self.skip

    async def run(
        self, trigger: str, batch_id: uuid.UUID | None = None, events: int = 0
    ) -> RunReport:
        self.calls.append((trigger, batch_id, events))
        self.journal.append("run")
        move = PointerMove("XAU", 1, 2, "promote", "trainer", HOUR)
        return RunReport(
            run_id=len(self.calls),
            status="succeeded",
            promoted={"XAU": 2},
            versions={"XAU": 2},
            moves=[move],
        )


def settings() -> TrainerSettings:
    return TrainerSettings(kafka=KafkaSettings(), trainer=TrainerSection(coalesce_s=0.01))


async def serve_until_drained(trainer: Trainer, consumer: FakeConsumer) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(trainer.serve(stop))
    await asyncio.wait_for(consumer.drained.wait(), 5)
    await asyncio.sleep(0.05)  # the last handle() finishes
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_burst_arriving_while_waiting_trains_once() -> None:
    journal: list[str] = []
    first = [record(loaded("XAU"), 0)]
    rest = [record(loaded("XAG", "XAU"), i) for i in range(1, 10)]
    consumer = FakeConsumer([first, rest], journal)
    producer = FakeProducer(journal)
    runner = FakeRunner(journal)
    trainer = Trainer(settings(), consumer, producer, runner)

    await serve_until_drained(trainer, consumer)

    assert len(runner.calls) == 1
    assert runner.calls[0][0] == "batch-loaded"
    assert runner.calls[0][2] == 10  # every event of the burst is answered by that run
    # The offsets move after the run is recorded; the moves are announced before the run.
    assert journal == [
        "run",
        "commit",
        "send models.production.v1",
        "send models.trained.v1",
    ]
    event = MODELS_TRAINED.decode(producer.sent[-1][1])
    assert (event.run_id, event.versions, event.promoted) == (1, {"XAU": 2}, ["XAU"])
    move = PRODUCTION_CHANGED.decode(producer.sent[0][1])
    assert (move.symbol, move.from_version, move.to_version) == ("XAU", 1, 2)


async def test_undecodable_and_metal_free_events_commit_without_a_run() -> None:
    journal: list[str] = []
    consumer = FakeConsumer([[record(b"not json", 0)], [record(loaded("BTC"), 1)]], journal)
    producer = FakeProducer(journal)
    runner = FakeRunner(journal)
    trainer = Trainer(settings(), consumer, producer, runner)

    await serve_until_drained(trainer, consumer)

    # Both arrive within one coalescing wait: handled together, one commit, no run.
    assert runner.calls == []
    assert journal == ["commit"]
    assert producer.sent == []


async def test_events_the_runner_declines_commit_and_publish_nothing() -> None:
    journal: list[str] = []
    consumer = FakeConsumer([[record(loaded("XAU"), 0)]], journal)
    runner = FakeRunner(journal, skip="only hours before the current windows")
    producer = FakeProducer(journal)
    trainer = Trainer(settings(), consumer, producer, runner)

    await serve_until_drained(trainer, consumer)

    assert (runner.calls, journal, producer.sent) == ([], ["commit"], [])

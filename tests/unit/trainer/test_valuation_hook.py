"""The trainer's loop and the valuation retrain, with fakes: a macro load of a feature series
retrains the valuation model (recorded before the offsets move, announced after) although no
metal was touched; a gold load retrains the metals, then it; other loads leave it alone."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from metalcast_core import BATCH_LOADED, MODELS_TRAINED, BatchLoaded
from metalcast_trainer.observe import TrainerObserver
from metalcast_trainer.runner import RunReport
from metalcast_trainer.service import Trainer
from tests.unit.trainer.test_trainer_loop import (
    HOUR,
    FakeConsumer,
    FakeProducer,
    FakeRunner,
    record,
    serve_until_drained,
    settings,
)


def macro_loaded(*series: str) -> bytes:
    return BATCH_LOADED.encode(
        BatchLoaded(
            symbols=list(series),
            first_hour=HOUR,
            last_hour=HOUR,
            rows_inserted=1,
            ticks_received=1,
            table="macro.observations",
        )
    )


def ticks_loaded(*symbols: str) -> bytes:
    return BATCH_LOADED.encode(
        BatchLoaded(
            symbols=list(symbols),
            first_hour=HOUR,
            last_hour=HOUR,
            rows_inserted=1,
            ticks_received=1,
        )
    )


class FakeValuation:
    """Wants gold loads and loads of its feature series, as ValuationTrainer does."""

    def __init__(self, journal: list[str], features: set[str]) -> None:
        self.journal = journal
        self.features = features
        self.calls: list[tuple[str, uuid.UUID | None, int]] = []

    async def wants(self, events: Sequence[BatchLoaded]) -> str | None:
        for e in events:
            if e.table == "macro.observations" and set(e.symbols) & self.features:
                return "macro"
            if e.table != "macro.observations" and "XAU" in e.symbols:
                return "gold"
        return None

    async def run(
        self, trigger: str, batch_id: uuid.UUID | None = None, events: int = 0
    ) -> RunReport:
        self.calls.append((trigger, batch_id, events))
        self.journal.append("valuation")
        return RunReport(run_id=100 + len(self.calls), status="succeeded", versions={"XAU-VAL": 1})


async def test_a_macro_load_of_a_feature_series_retrains_the_valuation_model() -> None:
    journal: list[str] = []
    consumer = FakeConsumer([[record(macro_loaded("DGS10"), 0)]], journal)
    producer = FakeProducer(journal)
    runner = FakeRunner(journal)
    valuation = FakeValuation(journal, {"DGS10", "DFF"})
    seen = TrainerObserver()
    trainer = Trainer(settings(), consumer, producer, runner, observer=seen, valuation=valuation)

    await serve_until_drained(trainer, consumer)

    assert [c[0] for c in valuation.calls] == ["batch-loaded"]
    assert (seen.last_run_id, seen.last_status) == (101, "succeeded")  # counted as a run
    assert runner.calls == []  # no metal in a macro load
    assert journal == ["valuation", "commit", "send models.trained.v1"]
    event = MODELS_TRAINED.decode(producer.sent[0][1])
    assert (event.run_id, event.versions) == (101, {"XAU-VAL": 1})


async def test_a_gold_load_retrains_both_and_other_loads_neither() -> None:
    journal: list[str] = []
    consumer = FakeConsumer(
        [[record(ticks_loaded("XAU"), 0)], [record(macro_loaded("CPIAUCSL"), 1)]], journal
    )
    producer = FakeProducer(journal)
    runner = FakeRunner(journal)
    valuation = FakeValuation(journal, {"DGS10"})
    trainer = Trainer(settings(), consumer, producer, runner, valuation=valuation)

    await serve_until_drained(trainer, consumer)

    assert len(valuation.calls) == 1  # the gold load; CPIAUCSL is not a feature series
    assert len(runner.calls) == 1
    # the metals first (their latency is untouched), then the valuation run, both recorded
    # before the offsets move; then both are announced
    assert journal == [
        "run",
        "valuation",
        "commit",
        "send models.trained.v1",
        "send models.production.v1",
        "send models.trained.v1",
    ]

"""The trainer's metrics and health rules (metalcast_trainer.observe), through the loop with
its fakes (no servers)."""

from __future__ import annotations

from metalcast_trainer.observe import TrainerObserver, trainer_health
from metalcast_trainer.runner import RunReport
from metalcast_trainer.service import Trainer
from tests.unit.trainer.test_trainer_loop import (
    FakeConsumer,
    FakeProducer,
    FakeRunner,
    loaded,
    record,
    serve_until_drained,
    settings,
)

T = 1_790_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T

    def __call__(self) -> float:
        return self.now


def observer() -> tuple[TrainerObserver, Clock]:
    clock = Clock()
    return TrainerObserver(clock=clock), clock


def value(seen: TrainerObserver, name: str, **labels: str) -> float | None:
    return seen.registry.get_sample_value(name, labels)


async def test_the_loop_reports_events_skips_and_runs() -> None:
    journal: list[str] = []
    consumer = FakeConsumer([[record(loaded("XAU"), 0)]], journal)
    seen = TrainerObserver()
    trainer = Trainer(
        settings(), consumer, FakeProducer(journal), FakeRunner(journal), observer=seen
    )
    await serve_until_drained(trainer, consumer)  # one run
    assert seen.last_poll_at is not None
    await trainer.handle([record(b"garbage", 1), record(loaded("XAU"), 2)])  # a run, a bad one
    await trainer.handle([record(loaded("BTC"), 3), record(loaded("ETH"), 4)])  # no metal
    assert value(seen, "metalcast_trainer_events_received_total") == 5
    assert value(seen, "metalcast_trainer_events_skipped_total", reason="undecodable") == 1
    assert value(seen, "metalcast_trainer_events_skipped_total", reason="no_new_window") == 2
    assert value(seen, "metalcast_trainer_runs_total", status="succeeded") == 2
    assert value(seen, "metalcast_trainer_run_in_progress") == 0
    assert seen.last_success_at is not None
    assert value(seen, "metalcast_trainer_last_success_timestamp_seconds") == seen.last_success_at


def test_a_run_reports_its_status_and_each_metals_backtest_and_fit_time() -> None:
    seen, clock = observer()
    seen.run_started()
    assert value(seen, "metalcast_trainer_run_in_progress") == 1
    clock.now += 12
    report = RunReport(
        run_id=7,
        status="partial",
        symbol_timings={"XAU": {"backtest_s": 3.0, "fit_s": 0.2}, "XAG": {"backtest_s": 4.0}},
    )
    seen.run_finished(report)
    assert value(seen, "metalcast_trainer_runs_total", status="partial") == 1
    assert value(seen, "metalcast_trainer_run_duration_seconds_sum") == 12
    duration = "metalcast_trainer_instrument_duration_seconds_sum"
    assert value(seen, duration, symbol="XAU", stage="backtest") == 3.0
    assert value(seen, duration, symbol="XAU", stage="fit") == 0.2
    assert value(seen, duration, symbol="XAG", stage="backtest") == 4.0
    assert value(seen, duration, symbol="XAG", stage="fit") is None
    # partial is not a success
    assert value(seen, "metalcast_trainer_last_success_timestamp_seconds") == 0
    seen.run_started()
    seen.run_finished(RunReport(run_id=8, status="unchanged"))
    assert value(seen, "metalcast_trainer_last_success_timestamp_seconds") == T + 12


def test_healthy_while_polling_between_runs() -> None:
    seen, clock = observer()
    seen.polled()
    clock.now += 30
    health = seen.health(1800, 60, 3)
    assert health.ok, health.reason
    assert health.details["running_since"] is None


def test_unhealthy_when_the_loop_stops_polling_outside_a_run() -> None:
    seen, clock = observer()
    clock.now += 61
    assert seen.health(1800, 60, 3).reason.startswith("the loop never polled since ")
    seen.polled()
    clock.now += 59
    assert seen.health(1800, 60, 3).ok
    clock.now += 1
    health = seen.health(1800, 60, 3)
    assert not health.ok
    assert health.reason.startswith("the loop has not polled Kafka since ")
    assert health.reason.endswith("(60 s ago) (threshold 60 s)")


def test_a_long_run_is_fine_until_it_is_stuck() -> None:
    seen, clock = observer()
    seen.polled()
    seen.run_started()
    clock.now += 600  # no polling during a run: not a stall
    assert seen.health(1800, 60, 3).ok
    clock.now += 1200
    health = trainer_health(seen, clock.now, 1800, 60, 3)
    assert not health.ok
    assert health.reason == (
        "a training run has been running since 2026-09-21T14:13:20Z (1800 s ago) "
        "(threshold 1800 s): stuck"
    )


def test_unhealthy_after_failed_runs_in_a_row_until_one_succeeds() -> None:
    seen, _ = observer()
    seen.polled()
    for run_id in (1, 2):
        seen.run_started()
        seen.run_finished(RunReport(run_id=run_id, status="failed", error="no metal trained"))
    assert seen.health(1800, 60, 3).ok
    seen.run_started()
    seen.run_finished(None)  # the run raised before it was recorded
    health = seen.health(1800, 60, 3)
    assert not health.ok
    assert health.reason == "the last 3 training runs failed, the latest (#None): the run raised"
    assert value(seen, "metalcast_trainer_runs_total", status="error") == 1
    seen.run_started()
    seen.run_finished(RunReport(run_id=4, status="succeeded"))
    assert seen.health(1800, 60, 3).ok

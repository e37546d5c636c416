"""The watch's rules, on figures (no servers): each problem named with its figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from metalcast_core import SINK_GROUP, TRAINER_GROUP
from metalcast_watch import Figures, WatchSection, evaluate

NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)
CFG = WatchSection(max_tick_age_minutes=120, max_sink_lag=100, max_trainer_lag=5)


def _healthy() -> Figures:
    return Figures(
        checked_at=NOW,
        newest_tick={s: NOW - timedelta(minutes=30) for s in ("XAU", "XAG", "XPT", "XPD")},
        last_training={"id": 7, "status": "succeeded"},
        sink_lag=3,
        trainer_lag=0,
        dead_letters={
            "prices.ticks.dlq": {"end": 4, "previous": 4},
            "prices.bars.dlq": {"end": 2, "previous": 2},
        },
    )


def test_healthy_figures_pass() -> None:
    assert evaluate(_healthy(), CFG) == []


def test_first_run_without_previous_dlq_figure_passes() -> None:
    figures = _healthy()
    for seen in figures.dead_letters.values():
        seen["previous"] = None
    assert evaluate(figures, CFG) == []


def test_every_problem_is_reported() -> None:
    figures = _healthy()
    figures.newest_tick["XAG"] = NOW - timedelta(hours=5)
    figures.newest_tick["XPD"] = None
    figures.last_training = {"id": 8, "status": "failed", "error": "boom"}
    figures.sink_lag = 101
    figures.trainer_lag = 6
    figures.dead_letters["prices.ticks.dlq"]["end"] = 9
    figures.dead_letters["prices.bars.dlq"]["end"] = 5
    figures.errors.append("cannot read X")
    problems = evaluate(figures, CFG)
    text = "\n".join(problems)
    assert len(problems) == 8, text
    assert "prices.bars.dlq grew by 3 messages since the previous watch run (2 -> 5)" in text
    assert "XAG tick is 300 min old" in text
    assert "no tick of XPD" in text
    assert "#8" in text
    assert "boom" in text
    assert "lags 101" in text
    assert "lags 6" in text
    assert "grew by 5" in text
    assert "cannot read X" in text


def test_thresholds_are_inclusive_limits() -> None:
    figures = _healthy()
    figures.sink_lag = 100
    figures.trainer_lag = 5
    figures.newest_tick["XAU"] = NOW - timedelta(minutes=120)
    assert evaluate(figures, CFG) == []


def test_failed_training_can_be_ignored() -> None:
    figures = _healthy()
    figures.last_training = {"id": 1, "status": "failed"}
    assert evaluate(figures, CFG.model_copy(update={"fail_on_failed_training": False})) == []


def test_a_run_left_running_too_long_is_reported_as_stuck() -> None:
    figures = _healthy()
    figures.running_runs = [
        {"id": 7, "started_at": NOW - timedelta(minutes=95)},
        {"id": 8, "started_at": NOW - timedelta(minutes=2)},
    ]
    [problem] = evaluate(figures, CFG.model_copy(update={"max_run_minutes": 30}))
    assert problem.startswith("training run #7 is stuck: running for 95 min")


def test_the_groups_measured_by_default_are_the_registry_s() -> None:
    cfg = WatchSection()
    assert (cfg.sink_group, cfg.trainer_group) == (SINK_GROUP, TRAINER_GROUP)


def test_an_outbox_that_does_not_drain_is_reported() -> None:
    figures = _healthy()
    figures.outbox_unpublished = 3
    figures.outbox_oldest = NOW - timedelta(minutes=2)
    assert evaluate(figures, CFG) == []  # the relay has not had its minute yet
    figures.outbox_oldest = NOW - timedelta(minutes=25)
    [problem] = evaluate(figures, CFG)
    assert problem.startswith("the outbox is not draining: 3 batch-loaded event(s)")
    assert "oldest for 25 min" in problem


def test_the_watch_follows_every_dead_letter_topic_of_the_registry() -> None:
    """Anything that can dead-letter is watched: every DeadLetter topic of the registry."""
    from metalcast_core import ALL_TOPICS, DeadLetter
    from metalcast_watch.rules import DEAD_LETTER_TOPICS

    registry = {t.name for t in ALL_TOPICS if t.event_type is DeadLetter}
    assert {t.name for t in DEAD_LETTER_TOPICS} == registry
    assert {"prices.ticks.dlq", "prices.bars.dlq", "macro.observations.dlq"} == registry

"""The watch's macro rules, on figures: a stale series named with its allowance, a series
never loaded (a problem only where the macro pull is required), the macro sink's lag and the
macro DLQ growing."""

from __future__ import annotations

from datetime import UTC, date, datetime

from metalcast_watch import Figures, WatchSection, evaluate

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
CFG = WatchSection(macro_slack_days=4, max_sink_lag=100)


def _series(newest: date | None, frequency: str = "daily", lag: int = 1) -> dict[str, object]:
    return {
        "frequency": frequency,
        "publication_lag_days": lag,
        "newest_date": newest,
        "newest_vintage": newest,
        "last_loaded": None if newest is None else NOW,
    }


def _figures(**macro: dict[str, object]) -> Figures:
    return Figures(
        checked_at=NOW,
        macro=macro,
        macro_sink_lag=0,
        dead_letters={"macro.observations.dlq": {"end": 2, "previous": 2}},
    )


def test_fresh_series_pass_within_their_frequency_lag_and_slack() -> None:
    figures = _figures(
        DGS10=_series(date(2026, 11, 24)),  # 6 days: 1 + 1 + 4 allowed
        DTWEXBGS=_series(date(2026, 11, 18), lag=7),  # 12 days: 1 + 7 + 4
        GDP=_series(date(2026, 7, 1), frequency="quarterly", lag=30),  # 152 > 92 + 30 + 4
    )
    problems = evaluate(figures, CFG)
    assert problems == [
        "stale macro series GDP: the newest observation is for 2026-07-01 (152 days old; "
        "quarterly with a 30-day publication lag allows 126), last loaded 2026-11-30 "
        "12:00:00+00:00"
    ]


def test_a_stale_daily_series_is_named() -> None:
    figures = _figures(DGS10=_series(date(2026, 11, 23)), DFF=_series(date(2026, 11, 29)))
    assert evaluate(figures, CFG) == [
        "stale macro series DGS10: the newest observation is for 2026-11-23 (7 days old; "
        "daily with a 1-day publication lag allows 6), last loaded 2026-11-30 12:00:00+00:00"
    ]


def test_a_series_never_loaded_fails_only_where_macro_is_required() -> None:
    figures = _figures(DFII10=_series(None))
    assert evaluate(figures, CFG) == []
    required = CFG.model_copy(update={"require_macro": True})
    assert evaluate(figures, required) == ["no observation of the macro series DFII10 at all"]


def test_macro_sink_lag_and_dlq_growth_are_reported() -> None:
    figures = _figures(DFF=_series(date(2026, 11, 29)))
    figures.macro_sink_lag = 101
    figures.dead_letters["macro.observations.dlq"]["end"] = 5
    assert evaluate(figures, CFG) == [
        "the dead-letter topic macro.observations.dlq grew by 3 messages since the previous "
        "watch run (2 -> 5)",
        "the macro sink (metalcast-sink-macro) lags 101 messages on macro.observations.v1 "
        "(threshold 100)",
    ]

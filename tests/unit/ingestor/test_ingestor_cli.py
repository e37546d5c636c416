"""The ingestor's command line decodes instants and backfill windows, and hands plain values to
the composition root (replaced here by fakes: no Kafka, no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from metalcast_ingestor import bootstrap
from metalcast_ingestor.cli import backfill_window, make_app, parse_instant
from metalcast_ingestor.config import IngestorSettings

runner = CliRunner()


def test_an_instant_is_an_iso_date_or_date_time_and_naive_means_utc() -> None:
    assert parse_instant("2026-01-02") == datetime(2026, 1, 2, tzinfo=UTC)
    assert parse_instant("2026-01-02T03:04") == datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    assert parse_instant("2026-01-02T03:04Z") == datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    cet = timezone(timedelta(hours=1))
    assert parse_instant("2026-01-02T03:04+01:00") == datetime(2026, 1, 2, 3, 4, tzinfo=cet)


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01", "", "02/01/2026"])
def test_a_bad_instant_is_a_bad_parameter_with_the_reason(bad: str) -> None:
    with pytest.raises(typer.BadParameter, match="is not an ISO-8601 date or date-time"):
        parse_instant(bad)


def test_a_window_of_days_ends_at_to() -> None:
    end = datetime(2026, 1, 3, tzinfo=UTC)
    assert backfill_window(2, None, end) == (datetime(2026, 1, 1, tzinfo=UTC), end)
    assert backfill_window(0.5, None, end) == (end - timedelta(hours=12), end)


def test_from_wins_over_days() -> None:
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 5, tzinfo=UTC)
    assert backfill_window(2, start, end) == (start, end)


def test_the_window_ends_by_default_at_the_end_of_the_current_hour() -> None:
    before = bootstrap.current_hour() + timedelta(hours=1)
    start, end = backfill_window(1, None, None)
    after = bootstrap.current_hour() + timedelta(hours=1)
    assert end in {before, after}
    assert start == end - timedelta(days=1)


@pytest.mark.parametrize(
    ("days", "start", "end", "reason"),
    [
        (None, None, datetime(2026, 1, 1, tzinfo=UTC), "needs --from or --days"),
        (0, None, datetime(2026, 1, 1, tzinfo=UTC), "not a positive number"),
        (-1, None, datetime(2026, 1, 1, tzinfo=UTC), "not a positive number"),
        (None, datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), "not before"),
        (None, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), "not before"),
    ],
)
def test_a_window_that_makes_no_range_is_refused(
    days: float | None, start: datetime | None, end: datetime | None, reason: str
) -> None:
    with pytest.raises(typer.BadParameter, match=reason):
        backfill_window(days, start, end)


# --- the commands, with the composition root replaced by fakes ------------------------------


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every call the commands make into ``bootstrap``, recorded instead of run."""
    seen: list[tuple[str, Any]] = []

    async def backfill(
        settings: IngestorSettings, source: str, start: datetime, end: datetime
    ) -> dict[str, Any]:
        seen.append(("backfill", (settings.ingest.symbols, source, start, end)))
        return {"published": 1}

    async def poll(settings: IngestorSettings, names: list[str] | None) -> dict[str, Any]:
        seen.append(("poll", (settings.ingest.symbols, names)))
        return {"published": 2, "failures": {}}

    async def replay(settings: IngestorSettings, file: Path) -> dict[str, Any]:
        seen.append(("replay", file))
        return {"published": 3}

    async def schedule(settings: IngestorSettings, names: list[str] | None, stop: Any) -> None:
        seen.append(("schedule", (settings.ingest.symbols, names)))

    monkeypatch.setattr(bootstrap, "configure", lambda settings: None)
    monkeypatch.setattr(bootstrap, "backfill", backfill)
    monkeypatch.setattr(bootstrap, "poll", poll)
    monkeypatch.setattr(bootstrap, "replay", replay)
    monkeypatch.setattr(bootstrap, "schedule", schedule)
    return seen


app = make_app(IngestorSettings)
METALS = IngestorSettings().ingest.symbols


def test_backfill_defaults_to_two_days_of_simulated_prices(calls: list[tuple[str, Any]]) -> None:
    result = runner.invoke(app, ["backfill", "--to", "2026-01-03"])
    assert result.exit_code == 0, result.output
    end = datetime(2026, 1, 3, tzinfo=UTC)
    assert calls == [("backfill", (METALS, "simulated", end - timedelta(days=2), end))]
    assert result.output.strip() == '{"published": 1}'


def test_backfill_takes_a_source_a_range_and_symbols(calls: list[tuple[str, Any]]) -> None:
    args = ["backfill", "--source", "gold-api", "--from", "2026-01-01T06:00"]
    args += ["--to", "2026-01-01T12:00", "--symbol", "xau", "--symbols", "XAG"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    start, end = datetime(2026, 1, 1, 6, tzinfo=UTC), datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert calls == [("backfill", (["XAU", "XAG"], "gold-api", start, end))]


def test_once_and_schedule_take_sources(calls: list[tuple[str, Any]]) -> None:
    once = runner.invoke(app, ["once", "--source", "gold-api", "--source", "coingecko"])
    assert once.exit_code == 0, once.output
    scheduled = runner.invoke(app, ["schedule", "--symbols", "xpt"])
    assert scheduled.exit_code == 0, scheduled.output
    assert calls == [
        ("poll", (METALS, ["gold-api", "coingecko"])),
        ("schedule", (["XPT"], None)),
    ]


def test_replay_takes_an_existing_file(calls: list[tuple[str, Any]], tmp_path: Path) -> None:
    file = tmp_path / "prices.csv"
    file.write_text("timestamp,symbol,price\n")
    assert runner.invoke(app, ["replay", str(file)]).exit_code == 0
    assert calls == [("replay", file)]
    missing = runner.invoke(app, ["replay", str(tmp_path / "missing.csv")])
    assert missing.exit_code == 2
    assert calls == [("replay", file)]


def test_a_bad_range_is_refused_before_anything_runs(calls: list[tuple[str, Any]]) -> None:
    result = runner.invoke(app, ["backfill", "--from", "2026-01-02", "--to", "2026-01-01"])
    assert result.exit_code == 2
    assert "is not before --to" in " ".join(result.output.replace("│", " ").split())
    assert calls == []


# --- metalcast ingest macro ---------------------------------------------------------------


def test_macro_hands_the_series_and_full_on_and_reports_refused_series(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[Any, bool]] = []

    async def macro(settings: IngestorSettings, series: Any, full: bool) -> dict[str, Any]:
        seen.append((series, full))
        return {"published": 7, "failures": ["NOSUCH: FRED refused the request: 400: gone"]}

    monkeypatch.setattr(bootstrap, "configure", lambda settings: None)
    monkeypatch.setattr(bootstrap, "macro", macro)
    result = runner.invoke(app, ["macro", "--full", "--series", "dgs10", "--series", "NOSUCH"])
    assert seen == [(["DGS10", "NOSUCH"], True)]
    assert result.exit_code == 1
    assert '"published": 7' in result.stdout
    assert "not fetched: NOSUCH: FRED refused the request: 400: gone" in result.output
    daily = runner.invoke(app, ["macro"])
    assert seen[-1] == (None, False)
    assert daily.exit_code == 1


def test_macro_without_a_key_stops_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    settings = IngestorSettings()
    settings.ingest.fred_api_key = None
    with pytest.raises(ValueError, match="set METALCAST_INGEST__FRED_API_KEY"):
        bootstrap.fred_source(settings, httpx.AsyncClient())

    async def macro(settings: IngestorSettings, series: Any, full: bool) -> dict[str, Any]:
        return {"source": bootstrap.fred_source(settings, httpx.AsyncClient())}

    monkeypatch.setattr(bootstrap, "configure", lambda settings: None)
    monkeypatch.setattr(bootstrap, "macro", macro)
    result = runner.invoke(make_app(lambda: settings), ["macro"])
    assert result.exit_code == 1
    assert "stopped: FRED needs an API key: set METALCAST_INGEST__FRED_API_KEY" in result.output


def test_the_daily_pull_is_at_the_next_configured_utc_time() -> None:
    from datetime import time

    from metalcast_ingestor.runner import next_daily

    at = time(22, 30)
    assert next_daily(datetime(2026, 11, 30, 21, 0, tzinfo=UTC), at) == datetime(
        2026, 11, 30, 22, 30, tzinfo=UTC
    )
    assert next_daily(datetime(2026, 11, 30, 22, 30, tzinfo=UTC), at) == datetime(
        2026, 12, 1, 22, 30, tzinfo=UTC
    )

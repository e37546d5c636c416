"""The API's rules that need no server: settings, forecast steps, instants, symbols."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import SecretStr, TypeAdapter, ValidationError

from metalcast_api.config import ApiSection, ApiSettings
from metalcast_api.errors import Instant, as_utc, metal_or_404
from metalcast_api.forecasts.service import StepsProblem, stale_hours, steps_for
from metalcast_core import PostgresSettings, S3Settings
from metalcast_models.sessions import days_after, step_calendar, steps_until

CUTOFF = datetime(2026, 1, 15, 10, tzinfo=UTC)
NOW = CUTOFF + timedelta(minutes=20)
H = timedelta(hours=1)


def test_production_refuses_a_placeholder_or_short_api_key() -> None:
    real_s3 = S3Settings(
        access_key_id=SecretStr("metalcast-api"),
        secret_access_key=SecretStr("a-real-secret-for-s3"),
    )
    real_pg = PostgresSettings(url="postgresql://api_login:a-real-password@db/metalcast")
    for key in ("changethis", "", "short-key"):
        with pytest.raises(ValidationError, match="METALCAST_API__API_KEY"):
            ApiSettings(
                environment="production",
                api=ApiSection(api_key=SecretStr(key)),
                s3=real_s3,
                postgres=real_pg,
            )
    ok = ApiSettings(
        environment="production",
        api=ApiSection(api_key=SecretStr("x" * 24)),
        s3=real_s3,
        postgres=real_pg,
    )
    assert ok.api.max_horizon_h == 168
    assert ApiSettings(environment="local").api.api_key.get_secret_value() == "changethis"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METALCAST_API__PORT", "8123")
    monkeypatch.setenv("METALCAST_API__MAX_HORIZON_H", "48")
    settings = ApiSettings()
    assert (settings.api.port, settings.api.max_horizon_h) == (8123, 48)
    assert settings.api.cors_origins == []  # CORS off


def test_horizon_counts_steps_after_the_cutoff() -> None:
    assert steps_for(CUTOFF, NOW, 168, horizon=24) == 24
    with pytest.raises(StepsProblem, match="beyond the maximum of 168"):
        steps_for(CUTOFF, NOW, 168, horizon=169)


def test_until_covers_the_target_with_every_hourly_step() -> None:
    assert steps_for(CUTOFF, NOW, 168, until=CUTOFF + 5 * H) == 5
    assert steps_for(CUTOFF, NOW, 168, until=CUTOFF + 5 * H + timedelta(minutes=1)) == 6
    assert steps_for(CUTOFF, NOW, 168, until=NOW + timedelta(seconds=1)) == 1
    with pytest.raises(StepsProblem, match="in the past"):
        steps_for(CUTOFF, NOW, 168, until=NOW - timedelta(seconds=1))
    with pytest.raises(StepsProblem, match="the maximum is 168 h"):
        steps_for(CUTOFF, NOW, 168, until=CUTOFF + 169 * H)


@pytest.mark.parametrize(
    ("horizon", "until", "words"),
    [(None, None, "either"), (3, NOW + H, "not both")],
)
def test_exactly_one_of_horizon_and_until(
    horizon: int | None, until: datetime | None, words: str
) -> None:
    with pytest.raises(StepsProblem, match=words):
        steps_for(CUTOFF, NOW, 168, horizon=horizon, until=until)


def test_stale_hours_count_data_newer_than_the_cutoff() -> None:
    assert stale_hours(CUTOFF, None) == 0
    assert stale_hours(CUTOFF, CUTOFF) == 0
    assert stale_hours(CUTOFF, CUTOFF + 3 * H) == 3


def test_instants_are_iso_text_and_naive_means_utc() -> None:
    adapter = TypeAdapter(Instant)
    assert adapter.validate_python("2026-01-15T10:00:00Z") == CUTOFF
    for bad in ("0", "1736935200", "tomorrow", "2026-01-15T10"):
        with pytest.raises(ValidationError, match="ISO-8601"):
            adapter.validate_python(bad)
    assert as_utc(datetime(2026, 1, 15, 10), "query", "until") == CUTOFF
    with pytest.raises(RequestValidationError):
        as_utc(datetime(9999, 12, 31, tzinfo=UTC), "query", "until")


def test_unknown_symbols_are_404_naming_the_known_ones() -> None:
    assert metal_or_404("xau").symbol == "XAU"
    with pytest.raises(HTTPException) as err:
        metal_or_404("BTC")
    assert err.value.status_code == 404
    assert "known symbols: XAU, XAG, XPT, XPD" in str(err.value.detail)


# --- Daily steps: NYSE trading days for stocks and ETFs, calendar days for crypto -----------

D = timedelta(days=1)
# Wednesday 2026-11-25; Thursday the 26th is Thanksgiving (NYSE closed), then a weekend.
WED = datetime(2026, 11, 25, tzinfo=UTC)


def test_daily_until_counts_nyse_trading_days_past_a_holiday_and_a_weekend() -> None:
    now = WED + timedelta(hours=3)
    nyse = step_calendar("equity", "daily")
    assert nyse == "XNYS"
    # Fri 27th, then Mon 30th: two sessions reach Monday.
    assert steps_for(WED, now, 366, until=WED + 5 * D, step=D, calendar=nyse) == 2
    # A Saturday target is reached by the next session, Monday.
    assert steps_for(WED, now, 366, until=WED + 3 * D, step=D, calendar=nyse) == 2
    # Thanksgiving itself: the next session (Friday) covers it.
    assert steps_for(WED, now, 366, until=WED + D, step=D, calendar=nyse) == 1
    # Steps are days at 00:00 UTC: Friday 00:00 is Friday's step, Friday 09:00 Monday's.
    assert steps_for(WED, now, 366, until=WED + 2 * D, step=D, calendar=nyse) == 1
    assert steps_for(WED, now, 366, until=WED + 2 * D + 9 * H, step=D, calendar=nyse) == 2
    # Crypto trades every day: five calendar days.
    assert step_calendar("crypto", "daily") is None
    assert steps_for(WED, now, 366, until=WED + 5 * D, step=D) == 5
    with pytest.raises(StepsProblem, match="the maximum is 3 trading days"):
        steps_for(WED, now, 3, until=WED + 7 * D, step=D, calendar=nyse)


def test_daily_steps_fall_on_nyse_sessions_or_every_day() -> None:
    cutoff = date(2026, 11, 25)
    assert days_after(cutoff, 4, "XNYS") == [
        date(2026, 11, 27),
        date(2026, 11, 30),
        date(2026, 12, 1),
        date(2026, 12, 2),
    ]
    # Good Friday 2027 (March 26) is closed, Columbus Day (October 11) is not.
    assert days_after(date(2027, 3, 25), 1, "XNYS") == [date(2027, 3, 29)]
    assert days_after(date(2027, 10, 8), 1, "XNYS") == [date(2027, 10, 11)]
    # Juneteenth 2027 falls on a Saturday: observed Friday the 18th.
    assert days_after(date(2027, 6, 17), 1, "XNYS") == [date(2027, 6, 21)]
    assert days_after(cutoff, 3, None) == [
        date(2026, 11, 26),
        date(2026, 11, 27),
        date(2026, 11, 28),
    ]
    # 20 sessions to Thursday 24th; Christmas (closed) is covered by Monday 28th.
    assert steps_until(cutoff, date(2026, 12, 25), "XNYS") == 21
    assert steps_until(cutoff, cutoff, "XNYS") == 0
    assert step_calendar("etf", "daily") == "XNYS"
    assert step_calendar("equity", "hourly") is None

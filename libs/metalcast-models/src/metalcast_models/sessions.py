"""Which days a daily forecast steps on: the exchange's trading days, or every day.

A daily model counts *entries* after its cutoff (the last bar it saw), and a stock's or an
ETF's bars come only on the days its exchange trades: step k of an equity or ETF is the k-th
NYSE session after the cutoff, not the cutoff + k days. Crypto trades every day (its steps
are calendar days), hourly instruments step in hours (unchanged).

NYSE's calendar is ``exchange_calendars``' ``XNYS``: weekends, the exchange's own holidays
(Good Friday, Juneteenth from 2022, observed-day rules) and its past special closures.
pandas' ``USFederalHolidayCalendar`` is not NYSE's: it closes on Columbus and Veterans Day
(NYSE trades) and trades on Good Friday (NYSE is closed).
"""

from __future__ import annotations

import functools
from datetime import date, timedelta
from typing import Any

NYSE = "XNYS"
# Kinds whose daily bars come from a US exchange: they step in NYSE sessions.
SESSION_KINDS = frozenset({"equity", "etf"})
# How far the calendar reaches: its rules are computed, so any year is available; the
# calendar object is built per span of years and kept.
_YEARS_BEFORE = 30
_YEARS_AFTER = 5


def step_calendar(kind: str, cadence: str) -> str | None:
    """The exchange calendar a daily instrument of ``kind`` steps on (``None``: every
    calendar day, or not a daily instrument)."""
    return NYSE if cadence == "daily" and kind in SESSION_KINDS else None


@functools.lru_cache(maxsize=4)
def _calendar(name: str, first_year: int, last_year: int) -> Any:
    import exchange_calendars as xc

    return xc.get_calendar(
        name, start=date(first_year, 1, 1).isoformat(), end=date(last_year, 12, 31).isoformat()
    )


def _sessions(name: str, after: date, until: date) -> list[date]:
    """The sessions of ``name`` in ``(after, until]``."""
    import pandas as pd

    cal = _calendar(name, after.year - _YEARS_BEFORE, until.year + _YEARS_AFTER)
    found = cal.sessions_in_range(pd.Timestamp(after + timedelta(days=1)), pd.Timestamp(until))
    return [ts.date() for ts in found]


def days_after(cutoff: date, n: int, calendar: str | None = None) -> list[date]:
    """The ``n`` days after ``cutoff`` that a daily model's steps 1..n fall on."""
    if n <= 0:
        return []
    if calendar is None:
        return [cutoff + timedelta(days=k) for k in range(1, n + 1)]
    # Fewer than 5 sessions in 7 days never happens; ask for enough days, then cut.
    days = _sessions(calendar, cutoff, cutoff + timedelta(days=2 * n + 10))
    if len(days) < n:  # pragma: no cover - a calendar closed for weeks
        days = _sessions(calendar, cutoff, cutoff + timedelta(days=7 * n + 30))
    return days[:n]


def steps_until(cutoff: date, until: date, calendar: str | None = None) -> int:
    """How many steps after ``cutoff`` reach ``until``: every day up to the first step day
    on or after it (a Saturday's step is the next session). 0 when ``until`` is not after
    ``cutoff``."""
    if until <= cutoff:
        return 0
    if calendar is None:
        return (until - cutoff).days
    within = _sessions(calendar, cutoff, until)
    if within and within[-1] == until:
        return len(within)
    return len(within) + 1  # and the next session after ``until``

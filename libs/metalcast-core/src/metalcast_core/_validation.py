"""Business checks on a tick that go beyond its schema (known symbol, sane timestamp)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(minutes=10)
# A dead letter's reason lists the known symbols only while they are this few.
MAX_LISTED = 30


class TickFacts(Protocol):
    """What the checks read: a :class:`PriceTick`, or a decoder's equivalent of one (the
    sink decodes into a msgspec Struct with the same fields)."""

    @property
    def symbol(self) -> str: ...

    @property
    def observed_at(self) -> datetime: ...


def tick_problem(tick: TickFacts, known_symbols: Collection[str], now: datetime) -> str | None:
    """Return why ``tick`` must not be stored, or ``None`` if it is fine."""
    if tick.symbol not in known_symbols:
        if len(known_symbols) > MAX_LISTED:
            return (
                f"unknown symbol {tick.symbol!r}; not in the instrument catalogue "
                f"({len(known_symbols)} instruments)"
            )
        return f"unknown symbol {tick.symbol!r}; known: {', '.join(sorted(known_symbols))}"
    if tick.observed_at < EARLIEST:
        return f"observed_at {tick.observed_at.isoformat()} is before {EARLIEST.year}"
    if tick.observed_at > now + MAX_CLOCK_SKEW:
        return f"observed_at {tick.observed_at.isoformat()} is in the future"
    return None


class BarFacts(Protocol):
    """What the bar checks read: a :class:`PriceBar`."""

    @property
    def symbol(self) -> str: ...

    @property
    def date(self) -> date: ...

    @property
    def open(self) -> float: ...

    @property
    def high(self) -> float: ...

    @property
    def low(self) -> float: ...

    @property
    def close(self) -> float: ...


def bar_problem(bar: BarFacts, known_symbols: Collection[str], now: datetime) -> str | None:
    """Return why a daily ``bar`` must not be stored, or ``None`` if it is fine. A bar's day
    may be at most one day ahead of UTC (a provider's own time zone east of UTC)."""
    if bar.symbol not in known_symbols:
        return f"unknown symbol {bar.symbol!r}; not in the instrument catalogue"
    if bar.date < EARLIEST.date():
        return f"date {bar.date.isoformat()} is before {EARLIEST.year}"
    if bar.date > (now + timedelta(days=1)).date():
        return f"date {bar.date.isoformat()} is in the future"
    if bar.high < max(bar.open, bar.close, bar.low) or bar.low > min(bar.open, bar.close):
        return (
            f"inconsistent bar: open {bar.open:g}, high {bar.high:g}, low {bar.low:g}, "
            f"close {bar.close:g}"
        )
    return None


_Day = date  # the class below has a property named ``date``


class MacroFacts(Protocol):
    """What :func:`macro_problem` reads (a :class:`MacroObservation`)."""

    @property
    def series_id(self) -> str: ...

    @property
    def date(self) -> _Day: ...

    @property
    def realtime_start(self) -> _Day: ...

    @property
    def realtime_end(self) -> _Day: ...


def macro_problem(
    obs: MacroFacts, known_series: Collection[str] | None, now: datetime
) -> str | None:
    """Return why a macro observation must not be stored, or ``None`` if it is fine: a series
    not in ``known_series`` (``macro.series``; ``None``: not checked here), a vintage that
    ends before it starts, a date or a vintage more than a day ahead of UTC (FRED's
    real-time clock runs on US time)."""
    if known_series is not None and obs.series_id not in known_series:
        return f"unknown series {obs.series_id!r}; not in macro.series"
    where = f"{obs.series_id} {obs.date.isoformat()}"
    if obs.realtime_end < obs.realtime_start:
        return (
            f"{where}: realtime_end {obs.realtime_end.isoformat()} is before realtime_start "
            f"{obs.realtime_start.isoformat()}"
        )
    tomorrow = (now + timedelta(days=1)).date()
    if obs.date > tomorrow:
        return f"{where}: the date is in the future"
    if obs.realtime_start > tomorrow:
        return f"{where}: realtime_start {obs.realtime_start.isoformat()} is in the future"
    return None

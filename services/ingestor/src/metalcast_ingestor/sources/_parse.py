"""Small helpers the sources share: timestamps and rate-to-price conversion.

All are pure but :func:`observed_at`, which falls back to the fetch time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from metalcast_core import utcnow

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def as_utc(value: datetime) -> datetime:
    """A naive datetime is taken as UTC; an aware one is converted to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_iso(value: Any) -> datetime | None:
    """``2026-07-03T16:08:54Z``, ``2026-07-03 16:08:54`` or ``2026-07-03`` (naive = UTC)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def parse_epoch(value: Any, *, allow_millis: bool = False) -> datetime | None:
    """Unix seconds (int, float or numeric string) to an aware UTC datetime.

    With ``allow_millis`` a value above 10^11 (year 5138 in seconds) is read as milliseconds:
    goldapi.io's history answers carry milliseconds where its latest answers carry seconds.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    seconds = float(value)
    if allow_millis and abs(seconds) > 1e11:
        seconds /= 1000.0
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def parse_timestamp(value: Any) -> datetime | None:
    """Epoch seconds or ISO-8601, whichever ``value`` is."""
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return parse_epoch(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            float(text)
        except ValueError:
            return parse_iso(text)
        return parse_epoch(text)
    return None


def observed_at(
    answer: Mapping[str, Any], key: str, parse: Callable[[Any], datetime | None]
) -> datetime | None:
    """When an answer says its price was observed: ``parse(answer[key])``, ``None`` when that
    is unreadable, or the fetch time (now) when the answer has no ``key``."""
    if key not in answer:
        return utcnow()
    return parse(answer[key])


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def floor_hour(value: datetime) -> datetime:
    return as_utc(value).replace(minute=0, second=0, microsecond=0)


def ceil_hour(value: datetime) -> datetime:
    floored = floor_hour(value)
    return floored if floored == as_utc(value) else floored + HOUR


def days_in(start: datetime, end: datetime) -> list[date]:
    """The UTC calendar days whose midnight lies in ``[start, end)``."""
    first = as_utc(start).date()
    if day_start(first) < as_utc(start):
        first += DAY
    days: list[date] = []
    current = first
    while day_start(current) < as_utc(end):
        days.append(current)
        current += DAY
    return days


def windows(start: datetime, end: datetime, size: timedelta) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into consecutive windows of at most ``size``."""
    out: list[tuple[datetime, datetime]] = []
    current = as_utc(start)
    stop = as_utc(end)
    while current < stop:
        nxt = min(current + size, stop)
        out.append((current, nxt))
        current = nxt
    return out


def usd_per_ounce(rates: Mapping[str, Any], code: str) -> tuple[Any, str] | None:
    """The USD price of one troy ounce from a base=USD ``rates`` map, and the field it came from.

    metalpriceapi and metals-api quote ``rates.XAU`` as ounces per 1 USD (0.0005) and
    ``rates.USDXAU`` as USD per ounce (2000.0). Prefer ``USDXAU``; else invert ``XAU``.
    Values that are not positive finite numbers are returned unchanged so that
    :func:`make_tick` rejects them with the reason.
    """
    direct = f"USD{code}"
    if direct in rates:
        return rates[direct], direct
    if code not in rates:
        return None
    inverse = rates[code]
    if (
        isinstance(inverse, int | float)
        and not isinstance(inverse, bool)
        and math.isfinite(inverse)
        and inverse > 0
    ):
        return 1.0 / inverse, f"1/{code}"
    return inverse, code


def numeric(value: Any) -> Any:
    """A number given as a numeric string (gold-api history) becomes a float; else unchanged."""
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value

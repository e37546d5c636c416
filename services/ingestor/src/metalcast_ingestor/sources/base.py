"""The interface every price source implements.

A source turns a provider's answer into :class:`PriceTick` objects, or into
:class:`Rejected` records carrying the original bytes and the reason (they go to the
dead-letter topic). Transport failures that survive the retries raise
:class:`SourceUnavailable` (logged and counted by the ingestor, never silently dropped).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import ValidationError

from metalcast_core import PriceBar, PriceTick, utcnow


class SourceError(Exception):
    """Base of every error a source raises. ``kind`` classes it for the metrics (``timeout``,
    ``network``, ``http_<status>``, ``no_history``, ``unavailable``)."""

    kind: str = "unavailable"

    def __init__(self, *args: object, kind: str | None = None) -> None:
        super().__init__(*args)
        if kind is not None:
            self.kind = kind


class SourceUnavailable(SourceError):
    """The provider could not be reached or kept failing after the retries."""


class HistoryNotSupported(SourceError):
    """The provider (or its plan) offers no history endpoint."""

    kind = "no_history"


@dataclass(frozen=True, slots=True)
class Rejected:
    """Something a provider returned that is not a valid tick: bound for the DLQ."""

    source: str
    reason: str
    original: bytes


Fetched = PriceTick | Rejected
BarFetched = PriceBar | Rejected


class PriceSource(ABC):
    """A provider of prices. ``name`` is stored with every tick it yields."""

    name: str
    instrument: Literal["spot", "futures"] = "spot"

    @abstractmethod
    async def latest(self, symbols: Sequence[str]) -> list[Fetched]:
        """The newest price of each symbol (one call, or as few as the API allows)."""

    async def history(
        self, symbols: Sequence[str], start: datetime, end: datetime
    ) -> AsyncIterator[list[Fetched]]:
        """Prices in ``[start, end)``, yielded in chunks (e.g. one per API call)."""
        raise HistoryNotSupported(f"{self.name} offers no history")
        yield []  # pragma: no cover - makes this an async generator

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections; sources without any keep the default."""


def make_tick(
    *,
    source: str,
    symbol: str,
    observed_at: datetime,
    price: Any,
    raw: dict[str, Any] | None,
    instrument: Literal["spot", "futures"] = "spot",
    currency: str = "USD",
) -> Fetched:
    """Build a tick, or a :class:`Rejected` with the reason if the values are not valid."""
    if isinstance(price, bool) or not isinstance(price, int | float):
        return Rejected(source, f"{symbol}: price {price!r} is not a number", _dump(raw))
    if not math.isfinite(price) or price <= 0:
        return Rejected(source, f"{symbol}: price {price!r} is not finite and positive", _dump(raw))
    try:
        return PriceTick(
            symbol=symbol,
            source=source,
            instrument=instrument,
            observed_at=observed_at,
            price=price,
            currency=currency,
            fetched_at=utcnow(),
            raw=raw,
        )
    except ValidationError as exc:
        return Rejected(source, f"{symbol}: {exc.errors(include_url=False)[0]['msg']}", _dump(raw))


def _dump(raw: dict[str, Any] | None) -> bytes:
    return json.dumps(raw, default=str).encode() if raw is not None else b""


def _number(value: Any) -> float | None:
    """A provider's number: a JSON number or a numeric string (Alpha Vantage sends strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def make_bar(
    *,
    source: str,
    symbol: str,
    day: date,
    open_: Any,
    high: Any,
    low: Any,
    close: Any,
    volume: Any,
    raw: dict[str, Any] | None,
    currency: str = "USD",
) -> BarFetched:
    """Build a daily bar, or a :class:`Rejected` naming the first bad value (not a number,
    zero or negative)."""
    values: dict[str, float | None] = {}
    for name, given in (
        ("open", open_),
        ("high", high),
        ("low", low),
        ("close", close),
        ("volume", volume),
    ):
        if given is None and name == "volume":
            values[name] = None
            continue
        number = _number(given)
        if number is None:
            reason = f"{symbol} {day.isoformat()}: {name} {given!r} is not a number"
            return Rejected(source, reason, _dump(raw))
        if number <= 0:
            reason = f"{symbol} {day.isoformat()}: {name} {given!r} is not positive"
            return Rejected(source, reason, _dump(raw))
        values[name] = number
    try:
        return PriceBar(
            symbol=symbol,
            source=source,
            date=day,
            open=values["open"],
            high=values["high"],
            low=values["low"],
            close=values["close"],
            volume=values["volume"],
            currency=currency,
            fetched_at=utcnow(),
            raw=raw,
        )
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(x) for x in err["loc"])
        return Rejected(source, f"{symbol} {day.isoformat()}: {loc}: {err['msg']}", _dump(raw))

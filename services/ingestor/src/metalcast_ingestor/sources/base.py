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
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from metalcast_core import PriceTick, utcnow


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

"""goldapi.io (header ``x-access-token``).

* latest: ``GET /api/{SYM}/USD``, one call per symbol; ``price`` is USD per troy ounce and
  ``observed_at`` is the answer's ``timestamp`` (unix seconds), else the fetch time.
* history: ``GET /api/{SYM}/USD/{YYYYMMDD}``, one call per symbol and day; one chunk per day
  holding every symbol. Historical answers carry ``date`` (ISO-8601) and a ``timestamp`` in
  *milliseconds*; ``observed_at`` is ``date`` if present, else ``timestamp`` (seconds or ms).
* An answer with an ``error`` key (``{"error": "Invalid API Key"}``) is a :class:`Rejected`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from typing import Any

from metalcast_core import utcnow
from metalcast_ingestor.sources._http import HttpSource
from metalcast_ingestor.sources._parse import as_utc, days_in, parse_epoch, parse_iso
from metalcast_ingestor.sources.base import Fetched, Rejected


class GoldApiIoSource(HttpSource):
    name = "goldapi-io"
    default_base_url = "https://www.goldapi.io/api"
    codes = {"XAU": "XAU", "XAG": "XAG", "XPT": "XPT", "XPD": "XPD"}
    required_key = "x-access-token"  # a header

    async def _fetch(self, symbol: str, day: date | None) -> Fetched:
        path = f"/{self.codes[symbol]}/USD" + (f"/{day:%Y%m%d}" if day else "")
        response = await self._http.get(
            f"{self.base_url}{path}", headers={self.required_key: self._api_key or ""}
        )
        body = self._http.decode_json(response)
        if isinstance(body, Rejected):
            return body
        return self._parse(symbol, body)

    def _parse(self, symbol: str, body: Any) -> Fetched:
        return self._tick_from_price(symbol, body, symbol_field="metal", observed=_observed)

    async def latest(self, symbols: Sequence[str]) -> list[Fetched]:
        return [await self._fetch(symbol, None) for symbol in self._checked(symbols)]

    async def history(
        self, symbols: Sequence[str], start: datetime, end: datetime
    ) -> AsyncIterator[list[Fetched]]:
        """One chunk per UTC day in ``[start, end)`` (one call per symbol)."""
        checked = self._checked(symbols)
        for day in days_in(as_utc(start), as_utc(end)):
            yield [await self._fetch(symbol, day) for symbol in checked]


def _observed(body: dict[str, Any]) -> datetime | str:
    """``date`` (history), else ``timestamp`` (seconds or ms), else the fetch time."""
    observed: datetime | None = utcnow()
    if "date" in body:
        observed = parse_iso(body["date"])
    elif "timestamp" in body:
        observed = parse_epoch(body["timestamp"], allow_millis=True)
    if observed is None:
        return f"bad date/timestamp {body.get('date', body.get('timestamp'))!r}"
    return observed

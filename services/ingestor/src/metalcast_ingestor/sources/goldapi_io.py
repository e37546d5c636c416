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

import httpx

from metalcast_core import utcnow
from metalcast_ingestor.sources._http import HttpSource, RetryPolicy, error_answer
from metalcast_ingestor.sources._parse import as_utc, days_in, parse_epoch, parse_iso
from metalcast_ingestor.sources.base import Fetched, Rejected, make_tick


class GoldApiIoSource(HttpSource):
    name = "goldapi-io"
    default_base_url = "https://www.goldapi.io/api"
    codes = {"XAU": "XAU", "XAG": "XAG", "XPT": "XPT", "XPD": "XPD"}

    def __init__(
        self,
        client: httpx.AsyncClient,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        *,
        base_url: str | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("goldapi-io needs an API key (x-access-token)")
        super().__init__(client, api_key, retry, base_url=base_url)

    async def _fetch(self, symbol: str, day: date | None) -> Fetched:
        path = f"/{self.codes[symbol]}/USD" + (f"/{day:%Y%m%d}" if day else "")
        response = await self._http.get(
            f"{self.base_url}{path}", headers={"x-access-token": self._api_key or ""}
        )
        body = self._http.decode_json(response)
        if isinstance(body, Rejected):
            return body
        return self._parse(symbol, body)

    def _parse(self, symbol: str, body: Any) -> Fetched:
        code = self.codes[symbol]
        if not isinstance(body, dict):
            return self._reject(f"{symbol}: expected a JSON object", body)
        if (problem := error_answer(body)) is not None:
            return self._reject(f"{symbol}: provider error {problem}", body)
        if body.get("metal", code) != code:
            return self._reject(f"{symbol}: answer is for {body.get('metal')!r}", body)
        if body.get("currency", "USD") != "USD":
            return self._reject(f"{symbol}: answer is in {body.get('currency')!r}", body)
        if "price" not in body:
            return self._reject(f"{symbol}: answer has no price", body)
        observed: datetime | None = utcnow()
        if "date" in body:
            observed = parse_iso(body["date"])
        elif "timestamp" in body:
            observed = parse_epoch(body["timestamp"], allow_millis=True)
        if observed is None:
            stamp = body.get("date", body.get("timestamp"))
            return self._reject(f"{symbol}: bad date/timestamp {stamp!r}", body)
        return make_tick(
            source=self.name, symbol=symbol, observed_at=observed, price=body["price"], raw=body
        )

    async def latest(self, symbols: Sequence[str]) -> list[Fetched]:
        return [await self._fetch(symbol, None) for symbol in self._checked(symbols)]

    async def history(
        self, symbols: Sequence[str], start: datetime, end: datetime
    ) -> AsyncIterator[list[Fetched]]:
        """One chunk per UTC day in ``[start, end)`` (one call per symbol)."""
        checked = self._checked(symbols)
        for day in days_in(as_utc(start), as_utc(end)):
            yield [await self._fetch(symbol, day) for symbol in checked]

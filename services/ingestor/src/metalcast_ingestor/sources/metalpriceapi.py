"""metalpriceapi.com (``api_key`` query parameter; free plan data is daily-delayed).

* latest: ``GET /v1/latest?base=USD&currencies=XAU,XAG,XPT,XPD``. ``rates.XAU`` is ounces per
  1 USD; the price per ounce is ``rates.USDXAU`` or, when only ``XAU`` is present, ``1/XAU``.
  ``observed_at`` is the answer's ``timestamp`` (unix seconds), else the fetch time.
* history: ``GET /v1/timeframe?start_date&end_date`` (at most 365 days a call), answering
  ``rates: {"YYYY-MM-DD": {...}}``; or, with ``use_timeframe=False`` (plans without it),
  ``GET /v1/{YYYY-MM-DD}`` once per day. Daily values: ``observed_at`` is that day 00:00 UTC.
* ``{"success": false, "error": {...}}`` arrives with HTTP 200: it becomes a
  :class:`Rejected` carrying the provider's error, never a tick.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx

from metalcast_core import utcnow
from metalcast_ingestor.sources._http import HttpSource, RetryPolicy, error_answer
from metalcast_ingestor.sources._parse import (
    as_utc,
    day_start,
    days_in,
    parse_epoch,
    parse_iso,
    windows,
)
from metalcast_ingestor.sources.base import Fetched, Rejected

_TIMEFRAME_MAX = timedelta(days=365)


class MetalpriceApiSource(HttpSource):
    name = "metalpriceapi"
    default_base_url = "https://api.metalpriceapi.com/v1"
    codes = {"XAU": "XAU", "XAG": "XAG", "XPT": "XPT", "XPD": "XPD"}

    def __init__(
        self,
        client: httpx.AsyncClient,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        *,
        base_url: str | None = None,
        use_timeframe: bool = True,
    ) -> None:
        if not api_key:
            raise ValueError("metalpriceapi needs an API key (api_key)")
        super().__init__(client, api_key, retry, base_url=base_url)
        self._use_timeframe = use_timeframe

    def _params(self, symbols: Sequence[str], **extra: str) -> dict[str, str | int]:
        return {
            "api_key": self._api_key or "",
            "base": "USD",
            "currencies": ",".join(self.codes[s] for s in symbols),
            **extra,
        }

    async def _get_json(self, path: str, params: dict[str, str | int]) -> Any | Rejected:
        response = await self._http.get(f"{self.base_url}{path}", params=params)
        body = self._http.decode_json(response)
        if isinstance(body, Rejected):
            return body
        if not isinstance(body, dict):
            return self._reject("expected a JSON object", body)
        if (problem := error_answer(body)) is not None:
            return self._reject(f"provider error (HTTP {response.status_code}): {problem}", body)
        return body

    async def latest(self, symbols: Sequence[str]) -> list[Fetched]:
        checked = self._checked(symbols)
        body = await self._get_json("/latest", self._params(checked))
        if isinstance(body, Rejected):
            return [body]
        observed = utcnow()
        if "timestamp" in body:
            parsed = parse_epoch(body["timestamp"])
            if parsed is None:
                return [self._reject(f"bad timestamp {body['timestamp']!r}", body)]
            observed = parsed
        return self._ticks_from_rates(checked, body.get("rates"), observed, body)

    async def history(
        self, symbols: Sequence[str], start: datetime, end: datetime
    ) -> AsyncIterator[list[Fetched]]:
        """One chunk per call: a ≤365-day timeframe, or one day with ``use_timeframe=False``."""
        checked = self._checked(symbols)
        start, end = as_utc(start), as_utc(end)
        if not self._use_timeframe:
            for day in days_in(start, end):
                body = await self._get_json(f"/{day.isoformat()}", self._params(checked))
                if isinstance(body, Rejected):
                    yield [body]
                    continue
                yield self._ticks_from_rates(checked, body.get("rates"), day_start(day), body)
            return
        for lo, hi in windows(start, end, _TIMEFRAME_MAX):
            days = days_in(lo, hi)
            if not days:
                continue
            params = self._params(
                checked, start_date=days[0].isoformat(), end_date=days[-1].isoformat()
            )
            body = await self._get_json("/timeframe", params)
            if isinstance(body, Rejected):
                yield [body]
                continue
            yield self._parse_timeframe(checked, body, lo, hi)

    def _parse_timeframe(
        self, symbols: Sequence[str], body: dict[str, Any], lo: datetime, hi: datetime
    ) -> list[Fetched]:
        rates = body.get("rates")
        if not isinstance(rates, dict):
            return [self._reject("timeframe answer has no rates object", body)]
        out: list[Fetched] = []
        for key in sorted(rates):
            observed = parse_iso(key)
            if observed is None:
                out.append(self._reject(f"timeframe has a bad date {key!r}", {key: rates[key]}))
                continue
            if not lo <= observed < hi:
                continue
            raw = {"date": key, "rates": rates[key]}
            out.extend(self._ticks_from_rates(symbols, rates[key], observed, raw))
        return out

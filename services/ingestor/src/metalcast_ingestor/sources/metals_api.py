"""metals-api.com (``access_key`` query parameter).

* latest: ``GET /api/latest?base=USD&symbols=XAU,XAG,XPT,XPD``; price per ounce from
  ``rates.USDXAU`` or ``1/rates.XAU`` (same pitfall as metalpriceapi). ``observed_at`` is the
  answer's ``timestamp`` (unix seconds), else the fetch time.
* history: ``GET /api/timeseries?start_date&end_date&symbols=ONE`` — one symbol per call, a
  plan-dependent window (``timeseries_days``, default 30) and never today (``end_date`` must
  be before today, so the range is clipped to yesterday; use ``latest`` for today). Daily
  values: ``observed_at`` is the day 00:00 UTC.
* ``success: false`` with HTTP 200 becomes a :class:`Rejected` with the provider's error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
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


class MetalsApiSource(HttpSource):
    name = "metals-api"
    default_base_url = "https://metals-api.com/api"
    codes = {"XAU": "XAU", "XAG": "XAG", "XPT": "XPT", "XPD": "XPD"}

    def __init__(
        self,
        client: httpx.AsyncClient,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        *,
        base_url: str | None = None,
        timeseries_days: int = 30,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        if not api_key:
            raise ValueError("metals-api needs an API key (access_key)")
        if timeseries_days < 1:
            raise ValueError("timeseries_days must be at least 1")
        super().__init__(client, api_key, retry, base_url=base_url)
        self._window = timedelta(days=timeseries_days)
        self._now = now

    async def _get_json(self, path: str, params: dict[str, str | int]) -> Any | Rejected:
        response = await self._http.get(
            f"{self.base_url}{path}", params={"access_key": self._api_key or "", **params}
        )
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
        body = await self._get_json(
            "/latest", {"base": "USD", "symbols": ",".join(self.codes[s] for s in checked)}
        )
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
        """One chunk per symbol and window of ``timeseries_days`` days."""
        checked = self._checked(symbols)
        today = day_start(as_utc(self._now()).date())
        start, end = as_utc(start), min(as_utc(end), today)
        for symbol in checked:
            for lo, hi in windows(start, end, self._window):
                days = days_in(lo, hi)
                if not days:
                    continue
                body = await self._get_json(
                    "/timeseries",
                    {
                        "base": "USD",
                        "symbols": self.codes[symbol],
                        "start_date": days[0].isoformat(),
                        "end_date": days[-1].isoformat(),
                    },
                )
                if isinstance(body, Rejected):
                    yield [body]
                    continue
                yield self._parse_timeseries(symbol, body, lo, hi)

    def _parse_timeseries(
        self, symbol: str, body: dict[str, Any], lo: datetime, hi: datetime
    ) -> list[Fetched]:
        rates = body.get("rates")
        if not isinstance(rates, dict):
            return [self._reject(f"{symbol}: timeseries answer has no rates object", body)]
        out: list[Fetched] = []
        for key in sorted(rates):
            observed = parse_iso(key)
            if observed is None:
                out.append(self._reject(f"{symbol}: timeseries has a bad date {key!r}", body))
                continue
            if lo <= observed < hi:
                raw = {"date": key, "rates": rates[key]}
                out.extend(self._ticks_from_rates([symbol], rates[key], observed, raw))
        return out

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

import httpx

from metalcast_ingestor.sources._http import RetryPolicy
from metalcast_ingestor.sources._parse import as_utc, day_start, days_in
from metalcast_ingestor.sources._rates import RatesApiSource
from metalcast_ingestor.sources.base import Fetched, Rejected

_TIMEFRAME_MAX = timedelta(days=365)


class MetalpriceApiSource(RatesApiSource):
    name = "metalpriceapi"
    default_base_url = "https://api.metalpriceapi.com/v1"
    codes = {"XAU": "XAU", "XAG": "XAG", "XPT": "XPT", "XPD": "XPD"}
    required_key = "api_key"
    symbols_param = "currencies"

    def __init__(
        self,
        client: httpx.AsyncClient,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        *,
        base_url: str | None = None,
        use_timeframe: bool = True,
    ) -> None:
        super().__init__(client, api_key, retry, base_url=base_url)
        self._use_timeframe = use_timeframe

    async def history(
        self, symbols: Sequence[str], start: datetime, end: datetime
    ) -> AsyncIterator[list[Fetched]]:
        """One chunk per call: a ≤365-day timeframe, or one day with ``use_timeframe=False``."""
        checked = self._checked(symbols)
        start, end = as_utc(start), as_utc(end)
        if not self._use_timeframe:
            for day in days_in(start, end):
                body = await self._get_rates(f"/{day.isoformat()}", checked)
                if isinstance(body, Rejected):
                    yield [body]
                    continue
                yield self._ticks_from_rates(checked, body.get("rates"), day_start(day), body)
            return
        history = self._daily_history(
            "/timeframe",
            checked,
            start,
            end,
            _TIMEFRAME_MAX,
            label="timeframe",
            bad_date_keeps="entry",
        )
        async for chunk in history:
            yield chunk

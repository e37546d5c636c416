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

import httpx

from metalcast_core import utcnow
from metalcast_ingestor.sources._http import RetryPolicy
from metalcast_ingestor.sources._parse import as_utc, day_start
from metalcast_ingestor.sources._rates import RatesApiSource
from metalcast_ingestor.sources.base import Fetched


class MetalsApiSource(RatesApiSource):
    name = "metals-api"
    default_base_url = "https://metals-api.com/api"
    codes = {"XAU": "XAU", "XAG": "XAG", "XPT": "XPT", "XPD": "XPD"}
    required_key = "access_key"
    symbols_param = "symbols"

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
        super().__init__(client, api_key, retry, base_url=base_url)  # checks the key first
        if timeseries_days < 1:
            raise ValueError("timeseries_days must be at least 1")
        self._window = timedelta(days=timeseries_days)
        self._now = now

    async def history(
        self, symbols: Sequence[str], start: datetime, end: datetime
    ) -> AsyncIterator[list[Fetched]]:
        """One chunk per symbol and window of ``timeseries_days`` days."""
        checked = self._checked(symbols)
        today = day_start(as_utc(self._now()).date())
        start, end = as_utc(start), min(as_utc(end), today)
        for symbol in checked:
            history = self._daily_history(
                "/timeseries",
                [symbol],
                start,
                end,
                self._window,
                label=f"{symbol}: timeseries",
                bad_date_keeps="answer",
            )
            async for chunk in history:
                yield chunk

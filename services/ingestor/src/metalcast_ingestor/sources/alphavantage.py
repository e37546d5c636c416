"""Alpha Vantage daily bars (stocks, ETFs): ``TIME_SERIES_DAILY``, compact (the last 100
trading days) or full (20+ years), key in the ``apikey`` query parameter.

Answer (every number a string)::

    {"Meta Data": {"2. Symbol": "SPY", "5. Time Zone": "US/Eastern", ...},
     "Time Series (Daily)": {"2026-11-27": {"1. open": "601.10", "2. high": "603.50",
                                            "3. low": "599.80", "4. close": "602.90",
                                            "5. volume": "41234567"}, ...}}

Alpha Vantage answers its limits with HTTP 200 and no data, never stored as data:

* ``{"Note": ...}`` (and an ``Information`` speaking of a rate limit per minute): throttled;
  waited on (``throttle_wait_s``, 60 s: the free plan allows 5 requests a minute) and
  retried, then :class:`Throttled` (retry later);
* ``Information`` speaking of the day's requests: the daily budget is spent
  (:class:`~metalcast_ingestor.sources._budget.BudgetExhausted`, and the local count is set
  to the limit);
* any other ``Information`` (a premium-only endpoint or parameter): recorded in
  :attr:`failures` for that symbol; the other symbols go on;
* ``{"Error Message": ...}`` (an unknown symbol, a bad call): a :class:`Rejected` for the
  dead-letter topic, naming the symbol; the other symbols go on.

Within a good answer, a day whose values do not parse, or are zero or negative, is a
:class:`Rejected` on its own; the days around it are published.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date
from typing import Any, ClassVar

import httpx

from metalcast_ingestor.sources._budget import BudgetExhausted, RequestBudget
from metalcast_ingestor.sources._http import HttpSource, RetryPolicy
from metalcast_ingestor.sources.base import (
    BarFetched,
    Fetched,
    Rejected,
    SourceUnavailable,
    make_bar,
)

log = logging.getLogger(__name__)

SERIES_KEY = "Time Series (Daily)"
FIELDS = ("1. open", "2. high", "3. low", "4. close", "5. volume")
FREE_DAILY_REQUESTS = 25
_DAILY_LIMIT = re.compile(r"per day|requests? per day|daily", re.IGNORECASE)
_RATE_LIMIT = re.compile(r"rate limit|per minute|call frequency|spreading out", re.IGNORECASE)


class Throttled(SourceUnavailable):
    """Alpha Vantage kept answering ``Note`` (its per-minute limit): retry later."""


class AlphaVantageSource(HttpSource):
    name = "alphavantage"
    default_base_url = "https://www.alphavantage.co"
    required_key = "apikey"
    codes: Mapping[str, str] = {"SPY": "SPY", "IBM": "IBM"}
    catalogue_driven: ClassVar[bool] = True
    throttle_wait_s: ClassVar[float] = 60.0
    throttle_retries: ClassVar[int] = 2

    def __init__(
        self,
        client: httpx.AsyncClient,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        *,
        base_url: str | None = None,
        codes: Mapping[str, str] | None = None,
        currencies: Mapping[str, str] | None = None,
        budget: RequestBudget | None = None,
    ) -> None:
        super().__init__(client, api_key, retry, base_url=base_url, codes=codes)
        self._currencies = dict(currencies or {})
        self.budget = budget
        self._retry = retry or RetryPolicy()

    async def latest(self, symbols: Sequence[str]) -> list[Fetched]:
        raise SourceUnavailable(
            "alphavantage serves daily bars, not ticks: use `metalcast ingest bars`"
        )

    async def daily_bars(
        self, symbols: Sequence[str], full: bool = False
    ) -> AsyncIterator[list[BarFetched]]:
        """One chunk per symbol: its bars, oldest first (and the days refused)."""
        for symbol in self._checked(symbols):
            body = await self._ask(symbol, full)
            if body is None:
                continue
            yield self._parse(symbol, body)

    async def _ask(self, symbol: str, full: bool) -> Any | None:
        """The JSON answer for ``symbol``; ``None`` when it carried no data (recorded)."""
        for attempt in range(self.throttle_retries + 1):
            if self.budget is not None:
                self.budget.take(self.name)
            response = await self._http.get(
                f"{self.base_url}/query",
                params={
                    "function": "TIME_SERIES_DAILY",
                    "symbol": self.codes[symbol],
                    "outputsize": "full" if full else "compact",
                    "datatype": "json",
                    "apikey": self._api_key or "",
                },
            )
            body = self._http.decode_json(response)
            if not isinstance(body, dict):
                return body  # a Rejected (HTML, not JSON) or a non-object: _parse says why
            note = body.get("Note")
            info = body.get("Information")
            if isinstance(info, str) and _DAILY_LIMIT.search(info) and not note:
                if self.budget is not None:
                    self.budget.exhaust(self.name)
                raise BudgetExhausted(
                    f"{self.name}: the day's requests are used up (the free plan allows "
                    f"{FREE_DAILY_REQUESTS} a day): {self._http.scrub_text(info)[:200]}"
                )
            if isinstance(note, str) or (isinstance(info, str) and _RATE_LIMIT.search(info)):
                text = self._http.scrub_text(str(note or info))[:200]
                if attempt < self.throttle_retries:
                    log.warning(
                        "%s: throttled on %s (%s); waiting %.0f s",
                        self.name,
                        symbol,
                        text,
                        self.throttle_wait_s,
                    )
                    await self._retry.sleep(self.throttle_wait_s)
                    continue
                raise Throttled(f"{self.name}: still throttled after {attempt + 1} tries: {text}")
            if isinstance(info, str):
                failure = f"{symbol}: not served on this plan: {self._http.scrub_text(info)[:200]}"
                log.error("%s: %s", self.name, failure)
                self.failures.append(failure)
                return None
            return body
        raise AssertionError("unreachable")

    def _parse(self, symbol: str, body: Any) -> list[BarFetched]:
        if not isinstance(body, dict):
            if isinstance(body, Rejected):
                return [body]
            return [self._reject(f"{symbol}: expected a JSON object", body)]
        if "Error Message" in body:
            return [self._reject(f"{symbol}: provider error: {body['Error Message']}", body)]
        series = body.get(SERIES_KEY)
        if not isinstance(series, dict):
            return [self._reject(f"{symbol}: answer has no {SERIES_KEY!r}", body)]
        named = str((body.get("Meta Data") or {}).get("2. Symbol", self.codes[symbol]))
        if named.upper() != self.codes[symbol].upper():
            return [self._reject(f"{symbol}: answer is for {named!r}", body)]
        currency = self._currencies.get(symbol, "USD")
        out: list[BarFetched] = []
        for day_text in sorted(series):
            values = series[day_text]
            try:
                day = date.fromisoformat(day_text)
            except ValueError:
                out.append(self._reject(f"{symbol}: bad date {day_text!r}", {day_text: values}))
                continue
            if not isinstance(values, dict) or any(f not in values for f in FIELDS[:4]):
                missing = [f for f in FIELDS if not isinstance(values, dict) or f not in values]
                reason = f"{symbol} {day_text}: missing {', '.join(missing)}"
                out.append(self._reject(reason, {day_text: values}))
                continue
            out.append(
                make_bar(
                    source=self.name,
                    symbol=symbol,
                    day=day,
                    open_=values["1. open"],
                    high=values["2. high"],
                    low=values["3. low"],
                    close=values["4. close"],
                    volume=values.get("5. volume"),
                    raw=values,
                    currency=currency,
                )
            )
        return out

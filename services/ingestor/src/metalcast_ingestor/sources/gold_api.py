"""gold-api.com: keyless latest prices; history only with an ``x-api-key``.

* latest: ``GET /price/{SYM}``, one call per symbol (there is no batch endpoint). The answer
  carries ``price`` (USD per troy ounce) and ``updatedAt`` (ISO-8601); ``observed_at`` is
  ``updatedAt``, or the fetch time when the answer has none.
* history: ``GET /history?symbol&startTimestamp&endTimestamp&groupBy&aggregation`` with the
  ``x-api-key`` header. The answer is a JSON array of rows such as
  ``{"day": "2026-07-08 00:00:00", "avg_price": "4134.700200"}`` (prices are numeric
  *strings* here, unlike ``/price``); ``observed_at`` is the row's period start, read as UTC.
  ``groupBy=hour`` needs a premium key; the default is ``day``. Without a key
  :class:`HistoryNotSupported` is raised.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx

from metalcast_ingestor.sources._http import HttpSource, RetryPolicy, error_answer
from metalcast_ingestor.sources._parse import as_utc, numeric, observed_at, parse_iso, windows
from metalcast_ingestor.sources.base import Fetched, HistoryNotSupported, Rejected, make_tick

_WINDOW = {"hour": timedelta(days=31), "day": timedelta(days=366)}


class GoldApiSource(HttpSource):
    name = "gold-api"
    default_base_url = "https://api.gold-api.com"
    codes = {"XAU": "XAU", "XAG": "XAG", "XPT": "XPT", "XPD": "XPD", "BTC": "BTC", "ETH": "ETH"}

    def __init__(
        self,
        client: httpx.AsyncClient,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        *,
        base_url: str | None = None,
        history_group_by: str = "day",
        history_aggregation: str = "avg",
    ) -> None:
        super().__init__(client, api_key, retry, base_url=base_url)
        if history_group_by not in _WINDOW:
            raise ValueError(f"history_group_by must be one of {sorted(_WINDOW)}")
        self._group_by = history_group_by
        self._aggregation = history_aggregation

    async def latest(self, symbols: Sequence[str]) -> list[Fetched]:
        out: list[Fetched] = []
        for symbol in self._checked(symbols):
            response = await self._http.get(f"{self.base_url}/price/{self.codes[symbol]}")
            body = self._http.decode_json(response)
            if isinstance(body, Rejected):
                out.append(body)
                continue
            out.append(self._parse_price(symbol, body))
        return out

    def _parse_price(self, symbol: str, body: Any) -> Fetched:
        return self._tick_from_price(symbol, body, symbol_field="symbol", observed=_updated_at)

    async def history(
        self, symbols: Sequence[str], start: datetime, end: datetime
    ) -> AsyncIterator[list[Fetched]]:
        """One chunk per symbol and window (31 days hourly, 366 days daily)."""
        if self._api_key is None:
            raise HistoryNotSupported(
                "gold-api: /history needs an API key (x-api-key header); none is configured"
            )
        checked = self._checked(symbols)
        start, end = as_utc(start), as_utc(end)
        for symbol in checked:
            for lo, hi in windows(start, end, _WINDOW[self._group_by]):
                response = await self._http.get(
                    f"{self.base_url}/history",
                    params={
                        "symbol": self.codes[symbol],
                        "startTimestamp": int(lo.timestamp()),
                        "endTimestamp": int(hi.timestamp()) - 1,
                        "groupBy": self._group_by,
                        "aggregation": self._aggregation,
                        "orderBy": "asc",
                    },
                    headers={"x-api-key": self._api_key},
                )
                body = self._http.decode_json(response)
                if isinstance(body, Rejected):
                    yield [body]
                    continue
                yield self._parse_history(symbol, body, lo, hi)

    def _parse_history(self, symbol: str, body: Any, lo: datetime, hi: datetime) -> list[Fetched]:
        if not isinstance(body, list):
            problem = error_answer(body)
            reason = f"provider error {problem}" if problem else "expected a JSON array"
            return [self._reject(f"{symbol}: history {reason}", body)]
        price_key = f"{self._aggregation}_price"
        out: list[Fetched] = []
        for row in body:
            if not isinstance(row, dict):
                out.append(self._reject(f"{symbol}: history row is not an object", row))
                continue
            observed = parse_iso(row.get(self._group_by))
            if observed is None:
                out.append(self._reject(f"{symbol}: history row has a bad {self._group_by!r}", row))
                continue
            if not lo <= observed < hi:
                continue  # the provider rounds its range to whole periods
            price = row.get(price_key, row.get("price"))
            if price is None:
                out.append(self._reject(f"{symbol}: history row has no {price_key}", row))
                continue
            out.append(
                make_tick(
                    source=self.name,
                    symbol=symbol,
                    observed_at=observed,
                    price=numeric(price),
                    raw=row,
                )
            )
        return out


def _updated_at(body: dict[str, Any]) -> datetime | str:
    """``updatedAt`` (ISO-8601), else the fetch time."""
    observed = observed_at(body, "updatedAt", parse_iso)
    return observed if observed is not None else f"bad updatedAt {body['updatedAt']!r}"

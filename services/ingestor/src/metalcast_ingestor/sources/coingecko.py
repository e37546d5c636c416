"""CoinGecko (crypto: BTC, ETH), keyless or with a demo key (header ``x-cg-demo-api-key``).

* latest: ``GET /simple/price?ids=bitcoin,ethereum&vs_currencies=usd&include_last_updated_at=true``
  answering ``{"bitcoin": {"usd": 67187.3, "last_updated_at": 1711356300}}``; ``observed_at``
  is ``last_updated_at`` (unix seconds), else the fetch time.
* history: ``GET /coins/{id}/market_chart/range?vs_currency=usd&from&to`` (unix seconds),
  one call per symbol and window of at most 90 days (CoinGecko answers hourly points for
  2-90 day ranges, daily beyond). ``prices`` is ``[[unix_ms, price], ...]``; ``observed_at``
  is each point's own time (not rounded to the hour).
* Keyless and demo keys see only the last 365 days: CoinGecko answers error 10012 (with
  HTTP 401); that becomes :class:`HistoryNotSupported` naming the limit.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from metalcast_ingestor.sources._http import HttpSource, ProviderHTTPError
from metalcast_ingestor.sources._parse import as_utc, observed_at, parse_epoch, windows
from metalcast_ingestor.sources.base import Fetched, HistoryNotSupported, Rejected, make_tick

_WINDOW = timedelta(days=90)
_RANGE_LIMIT_CODE = 10012


def _error_code(body: Any) -> tuple[int | None, str]:
    """CoinGecko's ``{"error": {"status": {"error_code", "error_message"}}}`` (or ``status``)."""
    if not isinstance(body, dict):
        return None, ""
    status = body.get("status")
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("status"), dict):
        status = error["status"]
    if isinstance(status, dict) and "error_code" in status:
        code = status.get("error_code")
        return (code if isinstance(code, int) else None), str(status.get("error_message", ""))
    if error is not None:
        return None, json.dumps(error, default=str)[:300]
    return None, ""


class CoinGeckoSource(HttpSource):
    name = "coingecko"
    default_base_url = "https://api.coingecko.com/api/v3"
    codes = {"BTC": "bitcoin", "ETH": "ethereum"}

    @property
    def _headers(self) -> dict[str, str]:
        return {"x-cg-demo-api-key": self._api_key} if self._api_key else {}

    async def latest(self, symbols: Sequence[str]) -> list[Fetched]:
        checked = self._checked(symbols)
        response = await self._http.get(
            f"{self.base_url}/simple/price",
            params={
                "ids": ",".join(self.codes[s] for s in checked),
                "vs_currencies": "usd",
                "include_last_updated_at": "true",
            },
            headers=self._headers,
        )
        body = self._http.decode_json(response)
        if isinstance(body, Rejected):
            return [body]
        if not isinstance(body, dict):
            return [self._reject("expected a JSON object", body)]
        code, message = _error_code(body)
        if code is not None or message:
            return [self._reject(f"provider error {code}: {message}", body)]
        out: list[Fetched] = []
        for symbol in checked:
            entry = body.get(self.codes[symbol])
            if not isinstance(entry, dict) or "usd" not in entry:
                out.append(self._reject(f"{symbol}: missing from the answer", body))
                continue
            observed = observed_at(entry, "last_updated_at", parse_epoch)
            if observed is None:
                reason = f"{symbol}: bad last_updated_at {entry['last_updated_at']!r}"
                out.append(self._reject(reason, body))
                continue
            out.append(
                make_tick(
                    source=self.name,
                    symbol=symbol,
                    observed_at=observed,
                    price=entry["usd"],
                    raw={self.codes[symbol]: entry},
                )
            )
        return out

    async def history(
        self, symbols: Sequence[str], start: datetime, end: datetime
    ) -> AsyncIterator[list[Fetched]]:
        """One chunk per symbol and window of at most 90 days."""
        checked = self._checked(symbols)
        for symbol in checked:
            coin = self.codes[symbol]
            for lo, hi in windows(as_utc(start), as_utc(end), _WINDOW):
                try:
                    response = await self._http.get(
                        f"{self.base_url}/coins/{coin}/market_chart/range",
                        params={
                            "vs_currency": "usd",
                            "from": int(lo.timestamp()),
                            "to": int(hi.timestamp()),
                        },
                        headers=self._headers,
                    )
                except ProviderHTTPError as exc:
                    self._raise_if_range_limit(exc.body, lo)
                    raise
                body = self._http.decode_json(response)
                if isinstance(body, Rejected):
                    yield [body]
                    continue
                self._raise_if_range_limit(body, lo)
                yield self._parse_chart(symbol, body, lo, hi)

    def _raise_if_range_limit(self, body: bytes | Any, lo: datetime) -> None:
        if isinstance(body, bytes):
            try:
                body = json.loads(body)
            except ValueError:
                return
        code, message = _error_code(body)
        if code == _RANGE_LIMIT_CODE:
            raise HistoryNotSupported(
                f"coingecko: history before {lo:%Y-%m-%d} is beyond the keyless/demo limit "
                f"of 365 days (error {code}: {message.strip()})"
            )

    def _parse_chart(self, symbol: str, body: Any, lo: datetime, hi: datetime) -> list[Fetched]:
        if not isinstance(body, dict):
            return [self._reject(f"{symbol}: expected a JSON object", body)]
        code, message = _error_code(body)
        if code is not None or message:
            return [self._reject(f"{symbol}: provider error {code}: {message}", body)]
        prices = body.get("prices")
        if not isinstance(prices, list):
            return [self._reject(f"{symbol}: answer has no prices array", body)]
        out: list[Fetched] = []
        for point in prices:
            if not isinstance(point, list) or len(point) != 2:
                out.append(self._reject(f"{symbol}: bad chart point {point!r}", point))
                continue
            observed = parse_epoch(point[0], allow_millis=True)
            if observed is None:
                out.append(self._reject(f"{symbol}: bad chart time {point[0]!r}", point))
                continue
            if not lo <= observed < hi:
                continue
            out.append(
                make_tick(
                    source=self.name,
                    symbol=symbol,
                    observed_at=observed,
                    price=point[1],
                    raw={"t": point[0], "price": point[1]},
                )
            )
        return out

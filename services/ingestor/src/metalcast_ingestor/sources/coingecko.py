"""CoinGecko (crypto: BTC, ETH), keyless or with a demo key (header ``x-cg-demo-api-key``).

* latest: ``GET /simple/price?ids=bitcoin,ethereum&vs_currencies=usd&include_last_updated_at=true``
  answering ``{"bitcoin": {"usd": 67187.3, "last_updated_at": 1711356300}}``; ``observed_at``
  is ``last_updated_at`` (unix seconds), else the fetch time.
* history: ``GET /coins/{id}/market_chart/range?vs_currency=usd&from&to`` (unix seconds),
  one call per symbol and window of at most 90 days (CoinGecko answers hourly points for
  2-90 day ranges, daily beyond). ``prices`` is ``[[unix_ms, price], ...]``; ``observed_at``
  is each point's own time (not rounded to the hour).
* Granularity, as the API gives it: the part of the range within the last 90 days is asked
  in windows of at most 90 days (hourly points); the part before that in one request with
  ``interval=daily`` (one point a day at 00:00 UTC).
* Keyless and Demo plans see only the last 365 days: CoinGecko answers error 10012 (with
  HTTP 401). That window is skipped and recorded in :attr:`failures` with a message naming
  the plan; the windows within the plan's reach still land. A coin id CoinGecko does not
  know (HTTP 404) is recorded the same way, and the other coins go on.
* Which coins: the instrument catalogue's ``coingecko`` ids (``codes``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from metalcast_core import utcnow
from metalcast_ingestor.sources._http import HttpSource, ProviderHTTPError
from metalcast_ingestor.sources._parse import as_utc, observed_at, parse_epoch, windows
from metalcast_ingestor.sources.base import Fetched, HistoryNotSupported, Rejected, make_tick

log = logging.getLogger(__name__)

_WINDOW = timedelta(days=90)
# Beyond this far back, CoinGecko serves daily points (its auto-granularity above 90 days).
HOURLY_REACH = timedelta(days=90)
FREE_PLAN_DAYS = 365
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
    catalogue_driven: ClassVar[bool] = True

    @property
    def plan(self) -> str:
        """The plan the key implies: CoinGecko's Demo plan with a demo key, else its keyless
        public API (both: 365 days of history, 5-30 calls a minute)."""
        return "Demo" if self._api_key else "keyless Public"

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
        """One chunk per symbol and request: daily points for the part of ``[start, end)``
        older than 90 days (one request), hourly points in windows of 90 days after it."""
        checked = self._checked(symbols)
        lo_all, hi_all = as_utc(start), as_utc(end)
        boundary = min(max(utcnow() - HOURLY_REACH, lo_all), hi_all)
        requests: list[tuple[datetime, datetime, bool]] = []
        if lo_all < boundary:
            requests.append((lo_all, boundary, True))
        requests += [(lo, hi, False) for lo, hi in windows(boundary, hi_all, _WINDOW)]
        for symbol in checked:
            coin = self.codes[symbol]
            for lo, hi, daily in requests:
                params: dict[str, str | int] = {
                    "vs_currency": "usd",
                    "from": int(lo.timestamp()),
                    "to": int(hi.timestamp()),
                }
                if daily:
                    params["interval"] = "daily"
                try:
                    response = await self._http.get(
                        f"{self.base_url}/coins/{coin}/market_chart/range",
                        params=params,
                        headers=self._headers,
                    )
                except ProviderHTTPError as exc:
                    if self._range_limit(exc.body, symbol, lo, hi):
                        continue
                    if exc.status_code == 404:
                        self._fail(
                            f"{symbol}: CoinGecko knows no coin {coin!r} (HTTP 404): check the "
                            "coingecko id in the instrument catalogue"
                        )
                        break
                    raise
                body = self._http.decode_json(response)
                if isinstance(body, Rejected):
                    yield [body]
                    continue
                if self._range_limit(body, symbol, lo, hi):
                    continue
                yield self._parse_chart(symbol, body, lo, hi)

    def _fail(self, message: str) -> None:
        log.error("%s: %s", self.name, message)
        self.failures.append(message)

    def _range_limit(self, body: bytes | Any, symbol: str, lo: datetime, hi: datetime) -> bool:
        """Whether ``body`` is error 10012 (beyond the plan's history); recorded if so."""
        if isinstance(body, bytes):
            try:
                body = json.loads(body)
            except ValueError:
                return False
        code, message = _error_code(body)
        if code != _RANGE_LIMIT_CODE:
            return False
        self._fail(
            f"{symbol}: {lo:%Y-%m-%d}..{hi:%Y-%m-%d} not fetched: CoinGecko's {self.plan} plan "
            f"serves only the last {FREE_PLAN_DAYS} days of history (error {code}: "
            f"{message.strip()[:160]}). A paid plan's key reaches further back."
        )
        return True

    def _raise_if_range_limit(self, body: bytes | Any, lo: datetime) -> None:
        """For callers that want the limit as an exception (nothing fetched before ``lo``)."""
        if isinstance(body, bytes):
            try:
                body = json.loads(body)
            except ValueError:
                return
        code, message = _error_code(body)
        if code == _RANGE_LIMIT_CODE:
            raise HistoryNotSupported(
                f"coingecko: history before {lo:%Y-%m-%d} is beyond the {self.plan} plan's "
                f"limit of {FREE_PLAN_DAYS} days (error {code}: {message.strip()})"
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

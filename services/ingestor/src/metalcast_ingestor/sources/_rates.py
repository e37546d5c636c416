"""What the base=USD "rates" APIs share (metalpriceapi, metals-api).

Both take the key and the wanted codes as query parameters (each names them its own way),
answer ``{"timestamp": ..., "rates": {"XAU": ..., "USDXAU": ...}}``, and report errors as
``{"success": false, "error": {...}}`` with HTTP 200. Each provider module keeps its URLs,
parameter names and history endpoint; this module holds the request, the error check,
``latest`` and the rates-to-ticks conversion.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from metalcast_ingestor.sources._http import HttpSource, error_answer
from metalcast_ingestor.sources._parse import (
    days_in,
    observed_at,
    parse_epoch,
    parse_iso,
    usd_per_ounce,
    windows,
)
from metalcast_ingestor.sources.base import Fetched, Rejected, make_tick


class RatesApiSource(HttpSource):
    """A base=USD rates API. ``required_key`` is the query parameter carrying the key."""

    required_key: ClassVar[str]
    symbols_param: ClassVar[str]  # the query parameter listing the wanted codes

    async def _get_rates(
        self, path: str, symbols: Sequence[str], **extra: str
    ) -> dict[str, Any] | Rejected:
        """GET ``path`` (base=USD, the codes of ``symbols``): the answer object, or why not."""
        params: dict[str, str | int] = {
            self.required_key: self._api_key or "",
            "base": "USD",
            self.symbols_param: ",".join(self.codes[s] for s in symbols),
            **extra,
        }
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
        body = await self._get_rates("/latest", checked)
        if isinstance(body, Rejected):
            return [body]
        observed = observed_at(body, "timestamp", parse_epoch)
        if observed is None:
            return [self._reject(f"bad timestamp {body['timestamp']!r}", body)]
        return self._ticks_from_rates(checked, body.get("rates"), observed, body)

    def _ticks_from_rates(
        self, symbols: Sequence[str], rates: Any, observed: datetime, raw: dict[str, Any]
    ) -> list[Fetched]:
        """One tick per symbol from a base=USD ``rates`` map."""
        if not isinstance(rates, dict):
            return [self._reject("answer has no rates object", raw)]
        out: list[Fetched] = []
        for symbol in symbols:
            code = self.codes[symbol]
            found = usd_per_ounce(rates, code)
            if found is None:
                reason = f"{symbol}: missing from the answer (neither USD{code} nor {code})"
                out.append(self._reject(reason, raw))
                continue
            price, price_field = found
            out.append(
                make_tick(
                    source=self.name,
                    symbol=symbol,
                    observed_at=observed,
                    price=price,
                    raw={**raw, "price_field": price_field},
                )
            )
        return out

    async def _daily_history(
        self,
        path: str,
        symbols: Sequence[str],
        start: datetime,
        end: datetime,
        size: timedelta,
        *,
        label: str,
        bad_date_keeps: Literal["entry", "answer"],
    ) -> AsyncIterator[list[Fetched]]:
        """One chunk per call to ``path``: the whole days of ``[start, end)`` in windows of
        ``size``, asked for as ``start_date``/``end_date`` and answered as ``rates`` by date.

        ``label`` starts the reasons; a bad date is rejected keeping that day's entry or the
        whole answer, as ``bad_date_keeps`` says.
        """
        for lo, hi in windows(start, end, size):
            days = days_in(lo, hi)
            if not days:
                continue
            body = await self._get_rates(
                path, symbols, start_date=days[0].isoformat(), end_date=days[-1].isoformat()
            )
            if isinstance(body, Rejected):
                yield [body]
                continue
            yield self._ticks_by_date(symbols, body, lo, hi, label, bad_date_keeps)

    def _ticks_by_date(
        self,
        symbols: Sequence[str],
        body: dict[str, Any],
        lo: datetime,
        hi: datetime,
        label: str,
        bad_date_keeps: Literal["entry", "answer"],
    ) -> list[Fetched]:
        """Ticks from ``rates: {"YYYY-MM-DD": {...}}`` for the days in ``[lo, hi)``."""
        rates = body.get("rates")
        if not isinstance(rates, dict):
            return [self._reject(f"{label} answer has no rates object", body)]
        out: list[Fetched] = []
        for key in sorted(rates):
            observed = parse_iso(key)
            if observed is None:
                original = {key: rates[key]} if bad_date_keeps == "entry" else body
                out.append(self._reject(f"{label} has a bad date {key!r}", original))
                continue
            if not lo <= observed < hi:
                continue
            raw = {"date": key, "rates": rates[key]}
            out.extend(self._ticks_from_rates(symbols, rates[key], observed, raw))
        return out

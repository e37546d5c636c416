"""FRED (Federal Reserve Economic Data) macro series with their vintages:
``GET /fred/series/observations?series_id=..&api_key=..&file_type=json``.

Every vintage is asked for (``realtime_start=1776-07-04``, ``realtime_end=9999-12-31``), so
each row says when its value was known: a value FRED revised later is a second row with a
later ``realtime_start``, and the first row's ``realtime_end`` closes the day before. A
backfill asks for every observation; a daily pull asks for the observations of the last
``since`` days only (docs/macro.md: revisions land within weeks for these series). Answer::

    {"realtime_start": "1776-07-04", "realtime_end": "9999-12-31", "count": 2, "offset": 0,
     "limit": 100000, "observations": [
        {"realtime_start": "2026-03-01", "realtime_end": "9999-12-31",
         "date": "2026-01-01", "value": "4.33"},
        {"realtime_start": "2026-03-01", "realtime_end": "9999-12-31",
         "date": "2026-01-02", "value": "."}]}

* values are strings; ``"."`` is a missing value (a holiday), published with ``value=None``;
* ``limit`` is at most 100000: more rows are paged with ``offset`` until ``count``;
* HTTP 429 is retried after its ``Retry-After`` (``HttpFetcher``), within the retry budget;
* an error body ``{"error_code": 400, "error_message": "..."}``: a bad or unregistered key is
  :class:`FredKeyRejected` (fatal, naming the setting); any other (an unknown series) is
  recorded in :attr:`failures` for that series, and the other series go on.

A row whose dates or value do not parse is a :class:`Rejected` on its own (for the
dead-letter topic); the rows around it are published. The publisher then dead-letters the
rows :func:`metalcast_core.macro_problem` refuses (``realtime_end`` before
``realtime_start``, a date in the future, a series not in ``macro.series``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar

import httpx
from pydantic import ValidationError

from metalcast_core import MacroObservation, utcnow
from metalcast_ingestor.sources._http import HttpSource, ProviderHTTPError, RetryPolicy
from metalcast_ingestor.sources.base import Fetched, Rejected, SourceUnavailable

log = logging.getLogger(__name__)

# The series the desk values gold against (docs/macro.md says why each).
DEFAULT_SERIES: tuple[str, ...] = ("DGS10", "DFII10", "T10YIE", "DTWEXBGS", "DFF")
# FRED's widest real-time period: every vintage.
ALL_VINTAGES = (date(1776, 7, 4), date(9999, 12, 31))
PAGE_LIMIT = 100_000  # FRED's largest ``limit``
KEY_SETTING = "METALCAST_INGEST__FRED_API_KEY"
MISSING = "."

MacroFetched = MacroObservation | Rejected


class FredKeyRejected(SourceUnavailable):
    """FRED refused the API key: nothing can be fetched until the setting is fixed."""

    def __init__(self, message: str) -> None:
        super().__init__(
            f"fred: the API key was refused ({message}); set {KEY_SETTING} to a registered "
            "32-character key (https://fred.stlouisfed.org/docs/api/api_key.html)",
            kind="bad_key",
        )


@dataclass(frozen=True, slots=True)
class SeriesChunk:
    """One page of one series: its rows (and the rows refused), and how far the series is."""

    series_id: str
    items: list[MacroFetched]
    fetched: int  # observations read so far for this series
    count: int  # observations FRED has for the request


def _error_of(body: Any) -> str | None:
    if isinstance(body, dict) and ("error_code" in body or "error_message" in body):
        return f"{body.get('error_code', '?')}: {body.get('error_message', '')}".strip()
    return None


def _is_key_error(message: str) -> bool:
    return "api_key" in message.lower() or "api key" in message.lower()


class FredSource(HttpSource):
    name = "fred"
    default_base_url = "https://api.stlouisfed.org"
    required_key = "api_key"
    codes: Mapping[str, str] = {s: s for s in DEFAULT_SERIES}
    page_limit: ClassVar[int] = PAGE_LIMIT

    def __init__(
        self,
        client: httpx.AsyncClient,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        *,
        base_url: str | None = None,
        page_limit: int | None = None,
    ) -> None:
        super().__init__(client, api_key, retry, base_url=base_url)
        self._limit = min(page_limit or self.page_limit, PAGE_LIMIT)

    async def latest(self, symbols: Sequence[str]) -> list[Fetched]:
        raise SourceUnavailable("fred serves macro series, not ticks: use `metalcast ingest macro`")

    async def observations(
        self, series: Sequence[str], since: date | None = None
    ) -> AsyncIterator[SeriesChunk]:
        """Every vintage of each series' observations (dated ``since`` or later, when given),
        one chunk per page, series after series. A series FRED does not know is recorded in
        :attr:`failures`; a refused key raises :class:`FredKeyRejected`."""
        for series_id in dict.fromkeys(s.upper() for s in series):
            offset = 0
            while True:
                body = await self._page(series_id, since, offset)
                if body is None:
                    break
                if isinstance(body, Rejected):
                    yield SeriesChunk(series_id, [body], offset, offset)
                    break
                rows = body.get("observations")
                if not isinstance(rows, list):
                    reason = f"{series_id}: answer has no 'observations' list"
                    yield SeriesChunk(series_id, [self._reject(reason, body)], offset, offset)
                    break
                count = body.get("count")
                total = count if isinstance(count, int) and count >= 0 else offset + len(rows)
                offset += len(rows)
                yield SeriesChunk(series_id, self.parse(series_id, rows), offset, total)
                if not rows or offset >= total:
                    break

    async def _page(self, series_id: str, since: date | None, offset: int) -> Any | None:
        """The JSON answer for one page, a Rejected (not JSON), or None (recorded failure)."""
        params: dict[str, str | int] = {
            "series_id": series_id,
            "api_key": self._api_key or "",
            "file_type": "json",
            "realtime_start": ALL_VINTAGES[0].isoformat(),
            "realtime_end": ALL_VINTAGES[1].isoformat(),
            "sort_order": "asc",
            "limit": self._limit,
            "offset": offset,
        }
        if since is not None:
            params["observation_start"] = since.isoformat()
        try:
            response = await self._http.get(
                f"{self.base_url}/fred/series/observations", params=params
            )
        except ProviderHTTPError as exc:
            body: Any
            try:
                body = json.loads(exc.body)
            except ValueError:
                body = None
            self._refused(series_id, _error_of(body) or str(exc))
            return None
        body = self._http.decode_json(response)
        problem = _error_of(body)
        if problem is not None:  # an error body with HTTP 200: the same rules
            self._refused(series_id, problem)
            return None
        if not isinstance(body, dict | Rejected):
            return self._reject(f"{series_id}: expected a JSON object", body)
        return body

    def _refused(self, series_id: str, message: str) -> None:
        message = self._http.scrub_text(message)[:300]
        if _is_key_error(message):
            raise FredKeyRejected(message)
        failure = f"{series_id}: FRED refused the request: {message}"
        log.error("%s: %s", self.name, failure)
        self.failures.append(failure)

    def parse(self, series_id: str, rows: Sequence[Any]) -> list[MacroFetched]:
        """FRED's rows as observations; each bad row a :class:`Rejected` on its own."""
        fetched_at = utcnow()
        out: list[MacroFetched] = []
        for row in rows:
            problem = self._row_problem(row)
            if problem is not None:
                out.append(self._reject(f"{series_id}: {problem}", row))
                continue
            try:
                out.append(
                    MacroObservation(
                        series_id=series_id,
                        source=self.name,
                        date=date.fromisoformat(row["date"]),
                        realtime_start=date.fromisoformat(row["realtime_start"]),
                        realtime_end=date.fromisoformat(row["realtime_end"]),
                        value=_value(row["value"]),
                        fetched_at=fetched_at,
                        raw=row,
                    )
                )
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                loc = ".".join(str(x) for x in err["loc"])
                out.append(self._reject(f"{series_id} {row.get('date')}: {loc}: {err['msg']}", row))
        return out

    @staticmethod
    def _row_problem(row: Any) -> str | None:
        if not isinstance(row, dict):
            return f"row {row!r} is not an object"
        days: dict[str, date] = {}
        for name in ("date", "realtime_start", "realtime_end"):
            text = row.get(name)
            try:
                days[name] = date.fromisoformat(str(text))
            except ValueError:
                return f"{name} {text!r} is not a date"
        when = days["date"].isoformat()
        if "value" not in row:
            return f"{when}: no value"
        value = row["value"]
        if value != MISSING and _value(value) is None:
            return f"{when}: value {value!r} is not a number (nor FRED's '.')"
        return None


def _value(text: Any) -> float | None:
    """FRED's value string as a float; None for ``"."`` or anything that is not a number."""
    if not isinstance(text, str) or text.strip() in ("", MISSING):
        return None
    try:
        number = float(text.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None

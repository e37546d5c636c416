"""FRED observations with vintages on recorded answers: "." as a missing value, a revised
past value, paging, a 429 with Retry-After, error bodies (a refused key, an unknown series)
and bad rows among good ones."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import httpx
import pytest

from metalcast_core import MacroObservation, macro_problem
from metalcast_ingestor.sources import (
    FredKeyRejected,
    FredSource,
    Rejected,
    RetryPolicy,
    SourceUnavailable,
)
from tests.unit.ingestor.ingestor_kit import FakeClock, Routes, recorded

ClientFor = Callable[[Routes], httpx.AsyncClient]
PATH = "/fred/series/observations"
NOW = datetime(2026, 11, 30, 21, 0, tzinfo=UTC)


def by_series(answers: dict[str, str | list[str]]) -> Callable[[httpx.Request], httpx.Response]:
    """Answer each series with its fixture(s), in turn (the last repeating)."""
    asked: dict[str, int] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        series = request.url.params["series_id"]
        given = answers.get(series, "fred/error_unknown_series.response.json")
        if isinstance(given, str):
            return recorded(given)
        asked[series] = asked.get(series, 0) + 1
        return recorded(given[min(asked[series], len(given)) - 1])

    return answer


def _source(client: httpx.AsyncClient, policy: RetryPolicy, **kwargs: object) -> FredSource:
    return FredSource(client, "a" * 32, policy, **kwargs)  # type: ignore[arg-type]


async def _all(source: FredSource, series: list[str], since: date | None = None) -> list[object]:
    return [i async for chunk in source.observations(series, since) for i in chunk.items]


async def test_every_vintage_is_asked_for_and_dot_is_a_missing_value(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({PATH: by_series({"DGS10": "fred/observations_DGS10.json"})})
    out = await _all(_source(client_for(routes), policy), ["DGS10"])
    assert all(isinstance(o, MacroObservation) for o in out)
    obs = [o for o in out if isinstance(o, MacroObservation)]
    assert len(obs) == 7
    holiday = next(o for o in obs if o.date == date(2026, 11, 26))
    assert holiday.value is None
    assert holiday.raw == {
        "realtime_start": "2026-11-27",
        "realtime_end": "9999-12-31",
        "date": "2026-11-26",
        "value": ".",
    }
    last = obs[-1]
    assert (last.series_id, last.source, last.date, last.value) == (
        "DGS10",
        "fred",
        date(2026, 11, 27),
        4.31,
    )
    assert (last.realtime_start, last.realtime_end) == (date(2026, 11, 30), date(9999, 12, 31))
    params = routes.requests[0].url.params
    assert params["file_type"] == "json"
    assert params["api_key"] == "a" * 32
    assert (params["realtime_start"], params["realtime_end"]) == ("1776-07-04", "9999-12-31")
    assert params["limit"] == "100000"
    assert "observation_start" not in params


async def test_a_daily_pull_asks_for_recent_observations_only(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({PATH: by_series({"DGS10": "fred/observations_DGS10.json"})})
    await _all(_source(client_for(routes), policy), ["DGS10"], since=date(2026, 9, 1))
    assert routes.requests[0].url.params["observation_start"] == "2026-09-01"


async def test_a_revised_value_is_a_second_vintage_and_the_first_is_closed(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({PATH: by_series({"DTWEXBGS": "fred/observations_DTWEXBGS_revised.json"})})
    out = await _all(_source(client_for(routes), policy), ["DTWEXBGS"])
    nov16 = [o for o in out if isinstance(o, MacroObservation) and o.date == date(2026, 11, 16)]
    assert [(o.realtime_start, o.realtime_end, o.value) for o in nov16] == [
        (date(2026, 11, 23), date(2026, 11, 29), 121.5104),
        (date(2026, 11, 30), date(9999, 12, 31), 121.4877),
    ]


async def test_pages_are_followed_with_offset_until_count(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    pages = [f"fred/observations_DFF_page{i}.json" for i in (1, 2, 3)]
    routes = Routes({PATH: by_series({"DFF": pages})})
    source = _source(client_for(routes), policy, page_limit=3)
    chunks = [c async for c in source.observations(["DFF"])]
    assert [r.url.params["offset"] for r in routes.requests] == ["0", "3", "6"]
    assert {r.url.params["limit"] for r in routes.requests} == {"3"}
    assert [(c.fetched, c.count) for c in chunks] == [(3, 7), (6, 7), (7, 7)]
    days = [o.date.day for c in chunks for o in c.items if isinstance(o, MacroObservation)]
    assert days == [20, 21, 22, 23, 24, 25, 26]


async def test_a_429_is_retried_after_its_retry_after(
    client_for: ClientFor, policy: RetryPolicy, clock: FakeClock
) -> None:
    routes = Routes({PATH: ["fred/rate_limited.response.json", "fred/observations_DGS10.json"]})
    out = await _all(_source(client_for(routes), policy), ["DGS10"])
    assert len(out) == 7
    assert routes.total == 2
    assert clock.waits == [7.0]


async def test_429_past_the_retry_budget_is_reported(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({PATH: "fred/rate_limited.response.json"})
    with pytest.raises(SourceUnavailable, match="429"):
        await _all(_source(client_for(routes), policy), ["DGS10"])
    assert routes.total == policy.attempts


async def test_a_refused_key_is_fatal_and_names_the_setting(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({PATH: "fred/error_bad_key.response.json"})
    with pytest.raises(FredKeyRejected) as caught:
        await _all(_source(client_for(routes), policy), ["DGS10", "DFF"])
    assert "METALCAST_INGEST__FRED_API_KEY" in str(caught.value)
    assert "not registered" in str(caught.value)
    assert "a" * 32 not in str(caught.value)
    assert routes.total == 1  # the other series are not asked with a refused key


async def test_an_unknown_series_is_reported_and_the_others_go_on(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({PATH: by_series({"DGS10": "fred/observations_DGS10.json"})})
    source = _source(client_for(routes), policy)
    out = await _all(source, ["NOSUCH", "DGS10"])
    assert len(out) == 7
    assert source.failures == [
        "NOSUCH: FRED refused the request: 400: Bad Request.  The series does not exist."
    ]


async def test_an_error_body_with_http_200_is_an_error_too(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    body = {"error_code": 400, "error_message": "Bad Request.  Variable limit is not valid."}
    routes = Routes({PATH: lambda _: httpx.Response(200, json=body)})
    source = _source(client_for(routes), policy)
    assert await _all(source, ["DGS10"]) == []
    assert source.failures == [
        "DGS10: FRED refused the request: 400: Bad Request.  Variable limit is not valid."
    ]


async def test_bad_rows_are_rejected_alone_and_the_publisher_checks_refuse_the_rest(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({PATH: by_series({"T10YIE": "fred/observations_T10YIE_bad_rows.json"})})
    out = await _all(_source(client_for(routes), policy), ["T10YIE"])
    rejected = [o for o in out if isinstance(o, Rejected)]
    assert sorted(r.reason for r in rejected) == [
        "T10YIE: 2026-11-24: value 'n/a' is not a number (nor FRED's '.')",
        "T10YIE: date '2026-11-2x' is not a date",
    ]
    assert all(r.source == "fred" and r.original for r in rejected)
    obs = [o for o in out if isinstance(o, MacroObservation)]
    problems = {o.date.isoformat(): macro_problem(o, {"T10YIE"}, NOW) for o in obs}
    assert problems == {
        "2026-11-23": None,
        "2026-11-25": "T10YIE 2026-11-25: realtime_end 2026-11-20 is before realtime_start "
        "2026-11-26",
        "2027-02-01": "T10YIE 2027-02-01: the date is in the future",
        "2026-11-27": None,
    }
    assert macro_problem(obs[0], {"DGS10"}, NOW) == ("unknown series 'T10YIE'; not in macro.series")


def test_the_key_is_required_and_never_shown() -> None:
    with pytest.raises(ValueError, match="api_key"):
        FredSource(httpx.AsyncClient())
    source = FredSource(httpx.AsyncClient(), "secretkey123")
    assert "secretkey123" not in repr(source)

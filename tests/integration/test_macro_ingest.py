"""FRED macro series on the real servers: recorded FRED answers (a "." holiday, a revised past
value, paging, a 429, an error body, bad rows) through the ingestor's real pull
(``bootstrap.macro``: adapter → publisher → Kafka) and the sink's macro loop (``metalcast sink
macro``) into ``macro.observations``. Vintages are stored, a replay stores nothing twice, a
revision adds a row and never overwrites the old one, each written batch is announced once,
and the bad rows end in the DLQ."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from metalcast_core import (
    BATCH_LOADED,
    MACRO,
    MACRO_DLQ,
    KafkaSettings,
    MacroObservation,
    PostgresSettings,
)
from metalcast_ingestor import bootstrap
from metalcast_ingestor.config import IngestorSettings, IngestSection
from metalcast_ingestor.sources import RetryPolicy
from metalcast_sink.bootstrap import run_macro_sink
from metalcast_sink.config import SinkSettings
from metalcast_sink.loading import LoadStats
from tests.support import FAST_GROUP, fetch, fetchval, produce_raw, read_all, sink_settings
from tests.unit.ingestor.ingestor_kit import FakeClock, Routes, recorded

pytestmark = pytest.mark.integration

PATH = "/fred/series/observations"
SERIES = ["DGS10", "DTWEXBGS", "DFF", "T10YIE", "NOSUCH"]


def _fred(revised: bool) -> tuple[Routes, FakeClock]:
    """FRED as recorded: DGS10 after a 429, DTWEXBGS first or revised, DFF in three pages,
    T10YIE with bad rows, NOSUCH unknown."""
    answers = {
        "DGS10": ["fred/rate_limited.response.json", "fred/observations_DGS10.json"],
        "DTWEXBGS": [
            "fred/observations_DTWEXBGS_revised.json"
            if revised
            else "fred/observations_DTWEXBGS_first.json"
        ],
        "DFF": [f"fred/observations_DFF_page{i}.json" for i in (1, 2, 3)],
        "T10YIE": ["fred/observations_T10YIE_bad_rows.json"],
    }
    asked: dict[str, int] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        series = request.url.params["series_id"]
        if series not in answers:
            return recorded("fred/error_unknown_series.response.json")
        asked[series] = asked.get(series, 0) + 1
        return recorded(answers[series][asked[series] - 1])

    return Routes({PATH: answer}), FakeClock()


def _settings(pg: PostgresSettings, kafka: KafkaSettings) -> tuple[IngestorSettings, SinkSettings]:
    ingestor = IngestorSettings(
        postgres=pg, kafka=kafka, ingest=IngestSection(fred_api_key=SecretStr("k" * 32))
    )
    sink = sink_settings(pg, kafka)
    sink.sink.macro_group_id = f"macro-{uuid.uuid4().hex[:8]}"
    return ingestor, sink


async def _pull(
    settings: IngestorSettings, revised: bool = False
) -> tuple[dict[str, Any], Routes, FakeClock]:
    routes, clock = _fred(revised)
    retry = RetryPolicy(attempts=3, min_interval=0, jitter=0, sleep=clock.sleep, clock=clock.clock)
    async with httpx.AsyncClient(transport=httpx.MockTransport(routes)) as client:
        result = await bootstrap.macro(
            settings, SERIES, full=True, show_progress=False, client=client, retry=retry
        )
    return result, routes, clock


async def test_fred_vintages_land_once_and_a_revision_adds_a_row(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    ingestor, sink = _settings(pg_settings, kafka_settings)

    async def drain() -> LoadStats:
        return await run_macro_sink(sink, until_idle=True, consumer_options=FAST_GROUP)

    first, routes, clock = await _pull(ingestor)
    # The 429 was waited out (Retry-After: 7) and DGS10 asked again; NOSUCH is reported.
    assert clock.waits == [7.0]
    assert routes.counts[PATH] == 2 + 1 + 3 + 1 + 1
    assert first["failures"] == [
        "NOSUCH: FRED refused the request: 400: Bad Request.  The series does not exist."
    ]
    # 7 DGS10 + 6 DTWEXBGS + 7 DFF + 2 good T10YIE; 4 bad T10YIE rows dead-lettered.
    assert (first["published"], first["dead_lettered"]) == (22, 4)
    stats = await drain()
    assert stats.rows_written == 22
    rows = await fetch(
        pg_settings,
        "SELECT series_id, date, realtime_start, realtime_end, value::float8 AS value "
        "FROM macro.observations ORDER BY series_id, date, realtime_start",
    )
    assert len(rows) == 22
    holiday = [r for r in rows if r["series_id"] == "DGS10" and r["date"] == date(2026, 11, 26)]
    assert [(r["value"], r["realtime_start"]) for r in holiday] == [(None, date(2026, 11, 27))]
    assert {r["realtime_end"] for r in rows} == {date(9999, 12, 31)}
    counts = {s: sum(r["series_id"] == s for r in rows) for s in ("DGS10", "DTWEXBGS", "DFF")}
    assert counts == {"DGS10": 7, "DTWEXBGS": 6, "DFF": 7}

    # The same answers again: nothing stored twice, nothing announced.
    again, _, _ = await _pull(ingestor)
    assert again["published"] == 22
    replayed = await drain()
    assert replayed.rows_written == 0
    assert await fetchval(pg_settings, "SELECT count(*) FROM macro.observations") == 22

    # FRED revised 2026-11-16 of the dollar index (and added three days): a new vintage, the
    # old one closed the day before and its value kept.
    await _pull(ingestor, revised=True)
    revised = await drain()
    assert revised.rows_written == 4 + 1
    nov16 = await fetch(
        pg_settings,
        "SELECT realtime_start, realtime_end, value::float8 AS value FROM macro.observations "
        "WHERE series_id = 'DTWEXBGS' AND date = '2026-11-16' ORDER BY realtime_start",
    )
    assert [tuple(r) for r in nov16] == [
        (date(2026, 11, 23), date(2026, 11, 29), 121.5104),
        (date(2026, 11, 30), date(9999, 12, 31), 121.4877),
    ]
    # What was known on 2026-11-25 is still there to read.
    known_then = await fetchval(
        pg_settings,
        "SELECT value::float8 FROM macro.observations WHERE series_id = 'DTWEXBGS' "
        "AND date = '2026-11-16' AND realtime_start <= '2026-11-25' "
        "AND realtime_end >= '2026-11-25'",
    )
    assert known_then == 121.5104
    assert await fetchval(pg_settings, "SELECT count(*) FROM macro.observations") == 26

    # One batch-loaded event per written batch, each recorded once in pipeline.batches.
    events = [BATCH_LOADED.decode(v) for v in await read_all(kafka_settings, BATCH_LOADED)]
    assert {e.table for e in events} == {"macro.observations"}
    assert sum(e.rows_inserted for e in events) == 22 + 5
    batches = await fetch(
        pg_settings,
        "SELECT batch_id, rows_inserted, symbols FROM pipeline.batches "
        "WHERE target = 'macro.observations'",
    )
    assert sorted(str(b["batch_id"]) for b in batches) == sorted(str(e.batch_id) for e in events)
    assert len({e.batch_id for e in events}) == len(events)
    last = max(events, key=lambda e: e.loaded_at)
    assert last.symbols == ["DTWEXBGS"]
    assert last.first_hour is not None
    assert last.first_hour.date() == date(2026, 11, 16)
    assert last.last_hour is not None
    assert last.last_hour.date() == date(2026, 11, 25)
    # The positions were stored with the rows.
    stored = await fetchval(
        pg_settings,
        "SELECT sum(next_offset) FROM pipeline.consumer_positions WHERE consumer = 'sink-macro'",
    )
    assert stored == 22 + 22 + 26  # every message of the three pulls read

    # The bad rows, with their reasons, in the DLQ (the ingestor's 2 and its checks' 2, three
    # times over).
    letters = [MACRO_DLQ.decode(v) for v in await read_all(kafka_settings, MACRO_DLQ)]
    reasons = sorted({d.reason for d in letters})
    assert reasons == [
        "T10YIE 2026-11-25: realtime_end 2026-11-20 is before realtime_start 2026-11-26",
        "T10YIE 2027-02-01: the date is in the future",
        "T10YIE: 2026-11-24: value 'n/a' is not a number (nor FRED's '.')",
        "T10YIE: date '2026-11-2x' is not a date",
    ]
    assert len(letters) == 12


async def test_the_sink_dead_letters_a_series_not_in_macro_series(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    _, sink = _settings(pg_settings, kafka_settings)
    obs = [
        MacroObservation(
            series_id=series,
            date=date(2026, 10, 1),
            realtime_start=date(2026, 10, 30),
            realtime_end=date(9999, 12, 31),
            value=3.1,
        )
        for series in ("GDP", "DGS10")
    ]
    await produce_raw(kafka_settings, MACRO, [(o.series_id.encode(), MACRO.encode(o)) for o in obs])
    stats = await run_macro_sink(sink, until_idle=True, consumer_options=FAST_GROUP)
    assert (stats.rows_written, stats.dead_lettered) == (1, 1)
    assert stats.reasons == ["unknown series 'GDP'; not in macro.series"]
    letters = [MACRO_DLQ.decode(v) for v in await read_all(kafka_settings, MACRO_DLQ)]
    assert [(d.stage, d.reason) for d in letters] == [
        ("sink", "unknown series 'GDP'; not in macro.series")
    ]
    assert MACRO.decode(letters[0].original).series_id == "GDP"
    stored = await fetch(pg_settings, "SELECT series_id FROM macro.observations")
    assert [r["series_id"] for r in stored] == ["DGS10"]


async def test_the_daily_task_publishes_what_fred_serves_and_fails_naming_a_refused_series(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    """What Airflow's metalcast_macro task runs (`tasks.pull_macro`), against a local FRED."""
    from metalcast_ingestor.tasks import MacroPullFailed, pull_macro
    from tests.integration.test_airflow import fred_server

    ingestor, _ = _settings(pg_settings, kafka_settings)
    with fred_server() as fred:
        ingestor.ingest.fred_base_url = fred
        ingestor.ingest.macro_series = ["DGS10", "NOSUCH"]
        with pytest.raises(MacroPullFailed) as failed:
            await asyncio.to_thread(pull_macro, ingestor)
    assert str(failed.value) == (
        "FRED refused: NOSUCH: FRED refused the request: 400: Bad Request.  The series does "
        "not exist."
    )
    published = [MACRO.decode(v) for v in await read_all(kafka_settings, MACRO)]
    assert sorted({o.series_id for o in published}) == ["DGS10"]
    assert len(published) == 7


async def test_a_restored_database_re_reads_from_the_positions_stored_with_its_rows(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    """The macro loop resumes from pipeline.consumer_positions, not Kafka's committed
    offsets: a database put back to before a load (as a restore does) gets it again."""
    _, sink = _settings(pg_settings, kafka_settings)
    obs = [
        MacroObservation(
            series_id="DFF",
            date=date(2026, 11, day),
            realtime_start=date(2026, 11, day + 1),
            realtime_end=date(9999, 12, 31),
            value=3.58,
        )
        for day in range(16, 21)
    ]
    await produce_raw(kafka_settings, MACRO, [(b"DFF", MACRO.encode(o)) for o in obs])
    first = await run_macro_sink(sink, until_idle=True, consumer_options=FAST_GROUP)
    assert first.rows_written == 5
    conn = await asyncpg.connect(pg_settings.url)
    try:  # back to before the load, positions included (the group's commits stay at the end)
        await conn.execute("DELETE FROM macro.observations")
        await conn.execute(
            "UPDATE pipeline.consumer_positions SET next_offset = 0 WHERE consumer = 'sink-macro'"
        )
    finally:
        await conn.close()
    again = await run_macro_sink(sink, until_idle=True, consumer_options=FAST_GROUP)
    assert (again.received, again.rows_written) == (5, 5)
    assert await fetchval(pg_settings, "SELECT count(*) FROM macro.observations") == 5

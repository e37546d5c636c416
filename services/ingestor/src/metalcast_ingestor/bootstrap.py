"""Composition root of the ingestor: settings → HTTP client, sources, producer, publisher."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from metalcast_core import (
    Catalogue,
    Instrument,
    configure_logging,
    connect,
    ensure_topics,
    fetch_catalogue,
    load_catalogue_file,
    make_producer,
    serve_status,
)
from metalcast_ingestor.config import IngestorSettings
from metalcast_ingestor.daily_bars import (
    SCHEDULED_KINDS,
    BarLedger,
    BarRunReport,
    run_bars_schedule,
    run_planned,
)
from metalcast_ingestor.observe import IngestorObserver
from metalcast_ingestor.publisher import BarPublisher, MacroPublisher, PublishStats, TickPublisher
from metalcast_ingestor.runner import backfill as run_backfill
from metalcast_ingestor.runner import (
    fetch_bars,
    fetch_macro,
    next_daily,
    poll_once,
    publish_stream,
    run_schedule,
)
from metalcast_ingestor.sources._budget import BudgetStatus, RequestBudget
from metalcast_ingestor.sources._http import RetryPolicy
from metalcast_ingestor.sources.alphavantage import AlphaVantageSource
from metalcast_ingestor.sources.base import PriceSource
from metalcast_ingestor.sources.fred import DEFAULT_SERIES, KEY_SETTING, FredSource
from metalcast_ingestor.sources.registry import SourceParams, build_source
from metalcast_ingestor.sources.replay import ReplaySource

log = logging.getLogger(__name__)


def configure(settings: IngestorSettings) -> None:
    configure_logging(settings.log_level)


def current_hour() -> datetime:
    """The start of the current UTC hour (a backfill's default end is one hour after it)."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def budget(settings: IngestorSettings) -> RequestBudget:
    return RequestBudget(settings.ingest.budget_file, settings.ingest.daily_requests)


def budget_status(settings: IngestorSettings) -> list[BudgetStatus]:
    """Today's requests per provider with a daily budget (``metalcast ingest --budget``)."""
    tracker = budget(settings)
    return [tracker.status(p) for p in sorted(settings.ingest.daily_requests)]


async def load_catalogue(settings: IngestorSettings) -> Catalogue:
    """The instrument catalogue: ``ref.instruments``, or the file when so configured or when
    the database cannot be reached (said in the log)."""
    instruments: list[Instrument] | None = None
    if settings.ingest.catalogue == "database":
        try:
            conn = await connect(settings.postgres)
            try:
                instruments = await fetch_catalogue(conn)
            finally:
                await conn.close()
        except (TimeoutError, OSError) as exc:
            log.warning("catalogue: database unreachable (%s); reading the file", exc)
        except Exception as exc:  # e.g. not migrated yet: the file is the reviewed copy
            log.warning("catalogue: %s: %s; reading the file", type(exc).__name__, exc)
    if instruments is None:
        instruments = load_catalogue_file(settings.ingest.catalogue_file)
    return Catalogue(instruments, extra=settings.known_symbols)


def _params(settings: IngestorSettings, catalogue: Catalogue | None = None) -> SourceParams:
    ing = settings.ingest
    if catalogue is None:
        return SourceParams.from_settings(ing, budget=budget(settings), base_urls=ing.base_urls)
    providers = {p for i in catalogue.instruments for p in i.providers}
    return SourceParams.from_settings(
        ing,
        provider_ids={p: catalogue.served_by(p) for p in providers},
        currencies={i.symbol: i.currency for i in catalogue.instruments},
        budget=budget(settings),
        base_urls=ing.base_urls,
    )


@asynccontextmanager
async def _publisher(
    settings: IngestorSettings, catalogue: Catalogue | None = None
) -> AsyncIterator[TickPublisher]:
    await ensure_topics(settings.kafka)
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        known = settings.known_symbols if catalogue is None else catalogue
        yield TickPublisher(producer, settings.kafka, known)
    finally:
        await producer.stop()


@asynccontextmanager
async def _sources(
    settings: IngestorSettings, names: Sequence[str], catalogue: Catalogue | None = None
) -> AsyncIterator[list[PriceSource]]:
    async with httpx.AsyncClient(timeout=settings.ingest.http_timeout_s) as client:
        sources = [build_source(n, client, _params(settings, catalogue)) for n in names]
        try:
            yield sources
        finally:
            for s in sources:
                await s.aclose()


def per_source_symbols(
    sources: Sequence[PriceSource], catalogue: Catalogue, chosen: Sequence[str] | None
) -> dict[str, list[str]]:
    """For each catalogue-driven source (CoinGecko, Alpha Vantage): the catalogued symbols it
    serves (those of ``chosen`` only, when given), its ids brought up to date."""
    out: dict[str, list[str]] = {}
    for source in sources:
        if not getattr(source, "catalogue_driven", False):
            continue
        served = catalogue.served_by(source.name)
        if served:
            source.codes = served  # type: ignore[attr-defined]
        symbols = sorted(served or source.codes)  # type: ignore[attr-defined]
        out[source.name] = [s for s in symbols if chosen is None or s in chosen]
    return out


def _summary(stats: PublishStats) -> dict[str, Any]:
    out = dataclasses.asdict(stats)
    out["by_symbol"] = dict(stats.by_symbol)
    return out


def chosen_symbols(settings: IngestorSettings) -> list[str] | None:
    """The symbols asked for (``--symbols`` or ``METALCAST_INGEST__SYMBOLS``), or ``None``:
    then the metals for the metal sources, every catalogued instrument for a
    catalogue-driven source (CoinGecko, Alpha Vantage)."""
    if "symbols" in settings.ingest.model_fields_set:
        return list(settings.ingest.symbols)
    return None


async def backfill(
    settings: IngestorSettings, source: str, start: datetime, end: datetime
) -> dict[str, Any]:
    symbols = chosen_symbols(settings)
    catalogue = await load_catalogue(settings)
    async with (
        _publisher(settings, catalogue) as pub,
        _sources(settings, [source], catalogue) as (src,),
    ):
        wanted = per_source_symbols([src], catalogue, symbols).get(
            src.name, list(symbols or settings.ingest.symbols)
        )
        stats = await run_backfill(src, wanted, start, end, pub)
        return {**_summary(stats), "failures": list(getattr(src, "failures", []))}


async def bars(settings: IngestorSettings, source: str, full: bool) -> dict[str, Any]:
    """Daily bars of the chosen symbols (default: every catalogued instrument the source
    serves)."""
    symbols = chosen_symbols(settings)
    catalogue = await load_catalogue(settings)
    async with (
        _bar_publisher(settings, catalogue) as pub,
        _sources(settings, [source], catalogue) as (src,),
    ):
        if not isinstance(src, AlphaVantageSource):
            raise ValueError(f"{source} serves no daily bars; alphavantage does")
        wanted = per_source_symbols([src], catalogue, symbols)[src.name]
        stats = await fetch_bars(src, wanted, full, pub)
        status = budget(settings).status(src.name)
        return {**_summary(stats), "failures": src.failures, "budget": status.as_json()}


@asynccontextmanager
async def _bar_publisher(
    settings: IngestorSettings, catalogue: Catalogue
) -> AsyncIterator[BarPublisher]:
    await ensure_topics(settings.kafka)
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        yield BarPublisher(producer, settings.kafka, catalogue)
    finally:
        await producer.stop()


async def replay(settings: IngestorSettings, file: Path) -> dict[str, Any]:
    async with _publisher(settings) as pub:
        src = ReplaySource(file)
        return _summary(await publish_stream(src.rows(), pub))


async def poll(settings: IngestorSettings, names: Sequence[str] | None) -> dict[str, Any]:
    chosen = chosen_symbols(settings)
    catalogue = await load_catalogue(settings)
    async with (
        _publisher(settings, catalogue) as pub,
        _sources(settings, names or settings.ingest.sources, catalogue) as sources,
    ):
        wanted = per_source_symbols(sources, catalogue, chosen)
        report = await poll_once(sources, settings.ingest.symbols, pub, per_source=wanted)
        return {**_summary(report.stats), "failures": report.failures}


async def schedule(
    settings: IngestorSettings, names: Sequence[str] | None, stop: asyncio.Event
) -> None:
    """Poll every interval until ``stop``, with ``/metrics`` and ``/healthz`` on
    ``metrics_host:metrics_port`` meanwhile; the catalogue is read again before each poll, so
    a coin added with `metalcast instruments add` is polled from the next one on."""
    ing = settings.ingest
    chosen = chosen_symbols(settings)
    catalogue = await load_catalogue(settings)
    async with (
        _publisher(settings, catalogue) as pub,
        _sources(settings, names or ing.sources, catalogue) as sources,
    ):

        async def wanted() -> Mapping[str, Sequence[str]]:
            fresh = await load_catalogue(settings)
            catalogue.replace(fresh.instruments)
            return per_source_symbols(sources, catalogue, chosen)

        seen = IngestorObserver([s.name for s in sources])
        async with serve_status(
            "ingestor",
            seen.registry,
            lambda: seen.health(ing.interval_s, ing.stall_after_s),
            ing.metrics_host,
            ing.metrics_port,
        ):
            await run_schedule(
                sources,
                ing.symbols,
                pub,
                ing.interval_s,
                ing.align,
                stop,
                observer=seen,
                per_source=wanted,
            )


def bar_ledger(settings: IngestorSettings) -> BarLedger:
    ing = settings.ingest
    return BarLedger(ing.bars_ledger_file or ing.budget_file.with_name("bars-ledger.json"))


def scheduled_bar_symbols(
    source: AlphaVantageSource, catalogue: Catalogue, chosen: Sequence[str] | None
) -> list[str]:
    """Every catalogued equity and ETF the source serves (of ``chosen`` only, when given)."""
    served = per_source_symbols([source], catalogue, chosen)[source.name]
    kinds = {i.symbol: i.kind for i in catalogue.instruments}
    return [s for s in served if kinds.get(s) in SCHEDULED_KINDS]


async def bars_schedule(
    settings: IngestorSettings,
    source: str,
    stop: asyncio.Event,
    on_report: Callable[[BarRunReport], None] | None = None,
) -> None:
    """Daily bars after every close until ``stop`` (:mod:`metalcast_ingestor.daily_bars`); the
    catalogue is read again before each run."""
    ing = settings.ingest
    chosen = chosen_symbols(settings)
    catalogue = await load_catalogue(settings)
    async with (
        _bar_publisher(settings, catalogue) as pub,
        _sources(settings, [source], catalogue) as (src,),
    ):
        if not isinstance(src, AlphaVantageSource):
            raise ValueError(f"{source} serves no daily bars; alphavantage does")
        tracker, ledger = budget(settings), bar_ledger(settings)

        async def run(now: datetime) -> BarRunReport:
            catalogue.replace((await load_catalogue(settings)).instruments)
            symbols = scheduled_bar_symbols(src, catalogue, chosen)
            return await run_planned(
                src, symbols, pub, tracker, ledger, now, ing.bars_at, ing.bars_reserve
            )

        await run_bars_schedule(run, ing.bars_at, stop, on_report=on_report)


async def known_macro_series(settings: IngestorSettings) -> list[str] | None:
    """The rows of ``macro.series``, or ``None`` when the database cannot be read (said in
    the log; the sink checks every observation against the table again)."""
    try:
        conn = await connect(settings.postgres)
        try:
            rows = await conn.fetch("SELECT series_id FROM macro.series ORDER BY series_id")
        finally:
            await conn.close()
    except Exception as exc:  # unreachable, or not migrated yet
        log.warning("macro.series: %s: %s; using the configured series", type(exc).__name__, exc)
        return None
    return [r["series_id"] for r in rows]


def fred_source(
    settings: IngestorSettings, client: httpx.AsyncClient, retry: RetryPolicy | None = None
) -> FredSource:
    """FRED with the key from the settings (ValueError naming the variable without one)."""
    ing = settings.ingest
    key = ing.fred_api_key.get_secret_value().strip() if ing.fred_api_key else ""
    if not key:
        raise ValueError(f"FRED needs an API key: set {KEY_SETTING}")
    retry = retry or RetryPolicy(attempts=ing.max_attempts, min_interval=ing.fred_min_interval_s)
    return FredSource(client, key, retry, base_url=ing.fred_base_url)


async def macro(
    settings: IngestorSettings,
    series: Sequence[str] | None = None,
    full: bool = False,
    show_progress: bool = True,
    today: date | None = None,
    client: httpx.AsyncClient | None = None,
    retry: RetryPolicy | None = None,
) -> dict[str, Any]:
    """One pull of the macro series (``series``, else ``ingest.macro_series``, else the rows
    of ``macro.series``): every observation with ``full`` (a backfill), else those of the
    last ``macro_recent_days``; every vintage of each. ``client`` and ``retry``: FRED's
    transport and retry policy (tests hand in recorded answers and a fake clock)."""
    ing = settings.ingest
    known = await known_macro_series(settings)
    wanted = list(series or ing.macro_series or known or DEFAULT_SERIES)
    since = (
        None
        if full
        else (today or datetime.now(UTC).date()) - timedelta(days=ing.macro_recent_days)
    )
    await ensure_topics(settings.kafka)
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        pub = MacroPublisher(producer, settings.kafka, known)
        async with contextlib.AsyncExitStack() as stack:
            if client is None:
                client = await stack.enter_async_context(
                    httpx.AsyncClient(timeout=ing.http_timeout_s)
                )
            src = fred_source(settings, client, retry)
            stats = await fetch_macro(src, wanted, since, pub, show_progress=show_progress)
            return {
                **_summary(stats),
                "series": wanted,
                "since": since,
                "failures": src.failures,
                "requests": src.requests_made,
            }
    finally:
        await producer.stop()


async def macro_schedule(
    settings: IngestorSettings, series: Sequence[str] | None, stop: asyncio.Event
) -> None:
    """A pull at once, then every day at ``macro_daily_at`` (UTC) until ``stop``. A failed
    pull is logged and tried again at the next one (a refused key stops the schedule)."""
    from metalcast_ingestor.sources.fred import FredKeyRejected

    while not stop.is_set():
        try:
            result = await macro(settings, series, show_progress=False)
            log.info(
                "macro pull: %d published, %d dead-lettered, failures: %s",
                result["published"],
                result["dead_lettered"],
                result["failures"] or "none",
            )
        except FredKeyRejected:
            raise
        except Exception as exc:
            log.error(
                "macro pull failed, trying again at the next: %s: %s", type(exc).__name__, exc
            )
        wake = next_daily(datetime.now(UTC), settings.ingest.macro_daily_at)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), (wake - datetime.now(UTC)).total_seconds())

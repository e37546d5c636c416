"""What the ingestor does: poll on a schedule, backfill a range, replay a file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from typing import Protocol

from tqdm import tqdm

from metalcast_core import utcnow
from metalcast_ingestor.publisher import BarPublisher, MacroPublisher, PublishStats, TickPublisher
from metalcast_ingestor.sources.alphavantage import AlphaVantageSource
from metalcast_ingestor.sources.base import Fetched, PriceSource, Rejected, SourceError
from metalcast_ingestor.sources.fred import FredSource

log = logging.getLogger(__name__)


class PollObserver(Protocol):
    """What polling tells its metrics (metalcast_ingestor.observe.IngestorObserver)."""

    def fetched(self, source: str, items: Sequence[Fetched], stats: PublishStats) -> None: ...

    def failed(self, source: str, error: BaseException) -> None: ...

    def polled(self, seconds: float) -> None: ...


@dataclass
class PollReport:
    stats: PublishStats = field(default_factory=PublishStats)
    failures: dict[str, str] = field(default_factory=dict)  # source -> why


async def poll_once(
    sources: Sequence[PriceSource],
    symbols: Sequence[str],
    publisher: TickPublisher,
    observer: PollObserver | None = None,
    per_source: Mapping[str, Sequence[str]] | None = None,
) -> PollReport:
    """Ask every source for its latest prices; a failing source does not stop the others.
    ``per_source``: the symbols to ask a source for by its name (e.g. every catalogued coin
    for CoinGecko), instead of ``symbols``; a source with an empty list is not asked."""
    report = PollReport()
    per_source = per_source or {}
    asked = [s for s in sources if per_source.get(s.name, symbols)]
    results = await asyncio.gather(
        *(s.latest(per_source.get(s.name, symbols)) for s in asked), return_exceptions=True
    )
    sources = asked
    for source, result in zip(sources, results, strict=True):
        if isinstance(result, BaseException):
            if isinstance(result, SourceError):
                log.error("source %s failed: %s", source.name, result)
            elif isinstance(result, Exception):
                log.error("source %s raised unexpectedly", source.name, exc_info=result)
            else:
                raise result
            report.failures[source.name] = f"{type(result).__name__}: {result}"
            if observer is not None:
                observer.failed(source.name, result)
            continue
        stats = await publisher.publish(result)
        report.stats.add(stats)
        if observer is not None:
            observer.fetched(source.name, result, stats)
    return report


def _wanted(source: PriceSource, symbols: Sequence[str]) -> list[str]:
    """The symbols this source can price (all of them for sources that don't say)."""
    supported = getattr(source, "supported_symbols", None)
    return [s for s in symbols if supported is None or s in supported]


async def fetch_bars(
    source: AlphaVantageSource,
    symbols: Sequence[str],
    full: bool,
    publisher: BarPublisher,
    show_progress: bool = True,
) -> PublishStats:
    """Daily bars of every symbol, one request each, published as they come; a progress bar
    counts the symbols."""
    total = PublishStats()
    with tqdm(
        total=len(symbols), unit="symbol", desc=f"bars {source.name}", disable=not show_progress
    ) as bar:
        async for chunk in source.daily_bars(symbols, full=full):
            total.add(await publisher.publish(chunk))
            bar.update(1)
            bar.set_postfix(published=total.published, dlq=total.dead_lettered)
    return total


async def fetch_macro(
    source: FredSource,
    series: Sequence[str],
    since: date | None,
    publisher: MacroPublisher,
    show_progress: bool = True,
) -> PublishStats:
    """Every vintage of each series' observations (dated ``since`` or later, when given),
    published page by page; the progress bar counts the observations of the series at hand
    (FRED says how many with the first page) and names it."""
    total = PublishStats()
    with tqdm(unit="obs", desc=f"macro {source.name}", disable=not show_progress) as bar:
        current = None
        async for chunk in source.observations(series, since):
            if chunk.series_id != current:
                current = chunk.series_id
                bar.reset(total=chunk.count)
                bar.set_description(f"macro {source.name} {current}")
            total.add(await publisher.publish(chunk.items))
            bar.update(max(0, chunk.fetched - bar.n))
            bar.set_postfix(published=total.published, dlq=total.dead_lettered)
    return total


def next_daily(now: datetime, at: clock_time) -> datetime:
    """The next ``at`` (UTC) strictly after ``now``."""
    today = datetime.combine(now.date(), at, tzinfo=now.tzinfo)
    return today if today > now else today + timedelta(days=1)


def next_run(now: datetime, interval_s: float, align: bool) -> datetime:
    """The next poll time: the next multiple of the interval since the epoch when aligned."""
    if not align:
        return now + timedelta(seconds=interval_s)
    epoch_s = now.timestamp()
    return datetime.fromtimestamp(
        (math.floor(epoch_s / interval_s) + 1) * interval_s, tz=now.tzinfo
    )


async def run_schedule(
    sources: Sequence[PriceSource],
    symbols: Sequence[str],
    publisher: TickPublisher,
    interval_s: float,
    align: bool,
    stop: asyncio.Event,
    observer: PollObserver | None = None,
    per_source: Callable[[], Awaitable[Mapping[str, Sequence[str]]]] | None = None,
) -> None:
    """Poll at once, then at every interval boundary until ``stop`` is set. ``per_source``
    is asked before every poll (the catalogue, read again: additions need no restart)."""
    while not stop.is_set():
        started = time.monotonic()
        wanted = await per_source() if per_source is not None else None
        report = await poll_once(sources, symbols, publisher, observer=observer, per_source=wanted)
        if observer is not None:
            observer.polled(time.monotonic() - started)
        log.info(
            "poll: %d published, %d dead-lettered, %d source(s) failed in %.2f s",
            report.stats.published,
            report.stats.dead_lettered,
            len(report.failures),
            time.monotonic() - started,
        )
        wake = next_run(utcnow(), interval_s, align)
        delay = max(0.0, (wake - utcnow()).total_seconds())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)


async def publish_stream(
    chunks: AsyncIterator[list[Fetched]],
    publisher: TickPublisher,
    progress: tqdm | None = None,
    start: datetime | None = None,
) -> PublishStats:
    """Publish chunk after chunk; the progress bar counts hours covered (or ticks)."""
    total = PublishStats()
    async for chunk in chunks:
        stats = await publisher.publish(chunk)
        total.add(stats)
        if progress is not None:
            if start is not None:
                newest = max(
                    (f.observed_at for f in chunk if not isinstance(f, Rejected)), default=None
                )
                if newest is not None:
                    covered = (newest - start).total_seconds() / 3600 + 1
                    progress.update(max(0.0, min(covered, progress.total) - progress.n))
            else:
                progress.update(len(chunk))
            progress.set_postfix(published=total.published, dlq=total.dead_lettered)
    return total


async def backfill(
    source: PriceSource,
    symbols: Sequence[str],
    start: datetime,
    end: datetime,
    publisher: TickPublisher,
    show_progress: bool = True,
) -> PublishStats:
    hours = max(1, math.ceil((end - start).total_seconds() / 3600))
    with tqdm(
        total=hours, unit="h", desc=f"backfill {source.name}", disable=not show_progress
    ) as bar:
        return await publish_stream(
            source.history(symbols, start, end), publisher, progress=bar, start=start
        )

"""The simulated source: integrated AR(1), deterministic per (seed, symbol, hour), fast."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from metalcast_core import PriceTick
from metalcast_ingestor.sources import Fetched, SimulatedSource
from metalcast_ingestor.sources.simulated import ANCHOR, PHI, SERIES

METALS = ["XAU", "XAG", "XPT", "XPD"]
T0 = datetime(2026, 3, 2, tzinfo=UTC)


async def _collect(
    source: SimulatedSource, symbols: list[str], start: datetime, end: datetime
) -> list[PriceTick]:
    out: list[Fetched] = []
    async for chunk in source.history(symbols, start, end):
        out.extend(chunk)
    assert all(isinstance(t, PriceTick) for t in out)
    return [t for t in out if isinstance(t, PriceTick)]


async def test_48_hours_of_4_metals_is_192_ticks_on_the_hour() -> None:
    ticks = await _collect(SimulatedSource(seed=1), METALS, T0, T0 + timedelta(hours=48))
    assert len(ticks) == 192
    assert all(
        t.observed_at.minute == t.observed_at.second == t.observed_at.microsecond == 0
        for t in ticks
    )
    assert {t.observed_at for t in ticks} == {T0 + timedelta(hours=h) for h in range(48)}
    # time-major: the four metals of an hour together, hours ascending
    assert [t.symbol for t in ticks[:8]] == METALS * 2
    assert [t.observed_at for t in ticks[::4]] == sorted({t.observed_at for t in ticks})
    for tick in ticks:
        assert tick.source == "simulated"
        assert tick.instrument == "spot"
        assert tick.currency == "USD"
        assert tick.observed_at.utcoffset() == timedelta(0)
        # the fast path skipped validation: the ticks must still be valid
        assert PriceTick.model_validate_json(tick.model_dump_json()) == tick


async def test_same_hour_same_price_whatever_the_range() -> None:
    a = await _collect(SimulatedSource(seed=7), METALS, T0, T0 + timedelta(hours=48))
    b = await _collect(
        SimulatedSource(seed=7), ["XPD", "XAU"], T0 + timedelta(hours=30), T0 + timedelta(days=40)
    )
    c = await _collect(
        SimulatedSource(seed=7, chunk_size=3),
        METALS,
        T0 - timedelta(days=120),
        T0 + timedelta(hours=2),
    )
    price_a = {(t.symbol, t.observed_at): t.price for t in a}
    overlap_b = [(t.symbol, t.observed_at) for t in b if (t.symbol, t.observed_at) in price_a]
    assert len(overlap_b) == 36  # hours 30..47 for two metals
    assert all(price_a[key] == t.price for t in b if (key := (t.symbol, t.observed_at)) in price_a)
    overlap_c = [t for t in c if (t.symbol, t.observed_at) in price_a]
    assert len(overlap_c) == 8
    assert all(price_a[(t.symbol, t.observed_at)] == t.price for t in overlap_c)


async def test_rerunning_a_backfill_gives_identical_ticks() -> None:
    first = await _collect(SimulatedSource(seed=3), METALS, T0, T0 + timedelta(days=3))
    again = await _collect(SimulatedSource(seed=3), METALS, T0, T0 + timedelta(days=3))
    key = [(t.symbol, t.observed_at, t.price) for t in first]
    assert key == [(t.symbol, t.observed_at, t.price) for t in again]
    other = await _collect(SimulatedSource(seed=4), METALS, T0, T0 + timedelta(days=3))
    assert key != [(t.symbol, t.observed_at, t.price) for t in other]


async def test_range_bounds_are_hours_on_the_hour_in_start_end() -> None:
    start = T0 + timedelta(minutes=20)
    end = T0 + timedelta(hours=3)
    ticks = await _collect(SimulatedSource(), ["XAU"], start, end)
    assert [t.observed_at for t in ticks] == [T0 + timedelta(hours=h) for h in (1, 2)]
    assert await _collect(SimulatedSource(), ["XAU"], end, end) == []


async def test_chunks_hold_whole_hours_and_respect_the_size() -> None:
    source = SimulatedSource(chunk_size=10)
    sizes = [len(c) async for c in source.history(METALS, T0, T0 + timedelta(hours=7))]
    assert sizes == [8, 8, 8, 4]  # 2 whole hours (8 ticks) per chunk of at most 10


def test_levels_are_realistic() -> None:
    source = SimulatedSource(seed=42)
    assert source.price_at("XAU", ANCHOR) == 2650.0
    assert source.price_at("XAG", ANCHOR) == 31.0
    assert source.price_at("XPT", ANCHOR) == 960.0
    assert source.price_at("XPD", ANCHOR) == 1000.0
    for symbol, spec in SERIES.items():
        later = source.price_at(symbol, ANCHOR + timedelta(days=60))
        assert 0.5 * spec.level < later < 2 * spec.level


async def test_increments_follow_ar1() -> None:
    ticks = await _collect(SimulatedSource(seed=11), ["XAU"], T0, T0 + timedelta(hours=40_000))
    increments = np.diff(np.log([t.price for t in ticks]))
    lag1 = np.corrcoef(increments[:-1], increments[1:])[0, 1]
    assert lag1 == pytest.approx(PHI, abs=0.03)
    stationary_sd = SERIES["XAU"].sigma / np.sqrt(1 - PHI**2)
    assert np.std(increments) == pytest.approx(stationary_sd, rel=0.05)


async def test_latest_is_the_current_hour() -> None:
    now = T0 + timedelta(hours=5, minutes=42)
    source = SimulatedSource(seed=9, now=lambda: now)
    out = await source.latest(["XAU", "BTC"])
    assert all(isinstance(t, PriceTick) for t in out)
    ticks = [t for t in out if isinstance(t, PriceTick)]
    assert [t.observed_at for t in ticks] == [T0 + timedelta(hours=5)] * 2
    [same] = await _collect(source, ["XAU"], T0 + timedelta(hours=5), T0 + timedelta(hours=6))
    assert ticks[0].price == same.price


async def test_a_million_ticks_sanity() -> None:
    """Size and shape of a large backfill (speed is measured in bench/, not asserted here)."""
    source = SimulatedSource(seed=5)
    count, chunks, last = 0, 0, None
    end = T0 + timedelta(hours=250_000)
    async for chunk in source.history(METALS, T0, end):
        count += len(chunk)
        chunks += 1
        last = chunk[-1]
    assert count == 1_000_000
    assert chunks == 100  # 10,000 ticks a chunk
    assert isinstance(last, PriceTick)
    assert last.observed_at == end - timedelta(hours=1)


async def test_unknown_symbol_and_too_early() -> None:
    with pytest.raises(ValueError, match="no series for DOGE"):
        await SimulatedSource().latest(["DOGE"])
    with pytest.raises(ValueError, match="starts at 1970"):
        await _collect(SimulatedSource(), ["XAU"], datetime(1969, 1, 1, tzinfo=UTC), T0)

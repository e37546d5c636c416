"""The sink's columnar batches and what the hourly rule takes from a batch, without a database."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from metalcast_core import PriceTick
from metalcast_sink.writer import HourlyPicks, TickRows

H = datetime(2026, 11, 1, 10, tzinfo=UTC)
HOUR = int(H.timestamp()) // 3600


def tick(symbol: str, minute: int, price: float, source: str = "a", **kw: object) -> PriceTick:
    return PriceTick(
        symbol=symbol,
        source=source,
        observed_at=H + timedelta(minutes=minute),
        price=price,
        **kw,
    )


def picked(ticks: list[PriceTick]) -> dict[tuple[int, str], float]:
    picks = TickRows.of(ticks).picks
    columns = ("XAU", "XAG", "XPT", "XPD")
    return {
        (h, s): p
        for k, h in enumerate(picks.hours)
        for s, prices in zip(columns, picks.prices, strict=True)
        if (p := prices[k]) is not None
    }


def test_the_last_spot_usd_tick_of_each_hour_and_metal_wins() -> None:
    ticks = [
        tick("XAU", 10, 10.0),
        tick("XAU", 50, 20.0),
        tick("XAU", 40, 15.0),
        tick("XAU", 59, 99.0, instrument="futures"),
        tick("XAU", 58, 98.0, currency="EUR"),
        tick("XAG", 1, 30.0),
        tick("BTC", 30, 90000.0),
        tick("XAG", 61, 31.0),  # the next hour
    ]
    assert picked(ticks) == {(HOUR, "XAU"): 20.0, (HOUR, "XAG"): 30.0, (HOUR + 1, "XAG"): 31.0}


def test_ties_go_to_the_source_that_sorts_first_then_to_the_first_in_the_batch() -> None:
    assert picked([tick("XAU", 30, 2.0, "b"), tick("XAU", 30, 1.0, "a")]) == {(HOUR, "XAU"): 1.0}
    assert picked([tick("XAU", 30, 1.0, "a"), tick("XAU", 30, 2.0, "b")]) == {(HOUR, "XAU"): 1.0}
    assert picked([tick("XAU", 30, 1.0, "a"), tick("XAU", 30, 2.0, "a")]) == {(HOUR, "XAU"): 1.0}


def test_a_batch_without_metals_picks_nothing() -> None:
    picks = TickRows.of([tick("BTC", 1, 1.0), tick("ETH", 2, 2.0)]).picks
    assert picks.hours == []
    assert picks.prices == [[], [], [], []]


def test_picks_do_not_depend_on_how_a_batch_was_sliced() -> None:
    rnd = random.Random(5)
    ticks = [
        tick(
            rnd.choice(["XAU", "XAG", "BTC"]),
            rnd.randrange(0, 300),
            rnd.uniform(1, 9),
            rnd.choice("ab"),
        )
        for _ in range(400)
    ]
    whole = TickRows.of(ticks)
    parts = TickRows.concat(
        [TickRows.of(ticks[i : i + 37], picks=False) for i in range(0, 400, 37)]
    )
    assert parts.picks == whole.picks
    for name in ("symbol", "source", "observed_at", "price", "hour", "raw"):
        assert getattr(parts, name) == getattr(whole, name)


def test_take_keeps_rows_in_order_and_picks_again() -> None:
    rows = TickRows.of([tick("XAU", 10, 1.0), tick("XAU", 50, 2.0), tick("XAG", 5, 3.0)])
    kept = rows.take([0, 2])
    assert kept.price == [1.0, 3.0]
    assert kept.picks == HourlyPicks([HOUR], [[1.0], [3.0], [None], [None]])


def test_raw_payloads_become_json_text_and_an_empty_one_stays_empty() -> None:
    rows = TickRows.of(
        [tick("XAU", 1, 1.0, raw={}), tick("XAU", 2, 1.0, raw={"p": 1.5}), tick("XAU", 3, 1.0)]
    )
    assert rows.raw == ["{}", '{"p": 1.5}', None]
    assert TickRows.of([tick("XAU", 1, 1.0)]).raw == [None]


def test_each_tick_knows_its_utc_hour_whatever_its_offset() -> None:
    local = H.astimezone(timezone(timedelta(hours=5, minutes=30))) + timedelta(minutes=59)
    rows = TickRows.of(
        [tick("XAU", 0, 1.0), PriceTick(symbol="XAU", source="a", observed_at=local, price=1.0)]
    )
    assert rows.hour == [HOUR, HOUR]

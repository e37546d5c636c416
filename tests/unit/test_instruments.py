"""The instrument catalogue (file and model), the daily-bar contract and the bar checks."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from metalcast_core import (
    BARS,
    METAL_SYMBOLS,
    Catalogue,
    CatalogueError,
    DecodeError,
    PriceBar,
    bar_problem,
    load_catalogue_file,
    parse_catalogue,
    tick_problem,
)

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _bar(**changes: object) -> PriceBar:
    values: dict[str, object] = {
        "symbol": "SPY",
        "source": "alphavantage",
        "date": date(2026, 11, 27),
        "open": 601.1,
        "high": 603.5,
        "low": 599.8,
        "close": 602.9,
        "volume": 41234567.0,
    }
    values.update(changes)
    return PriceBar.model_validate(values)


def test_the_shipped_catalogue_is_valid_and_keeps_the_metals() -> None:
    instruments = load_catalogue_file()
    by_symbol = {i.symbol: i for i in instruments}
    assert set(METAL_SYMBOLS) <= set(by_symbol)
    assert all(by_symbol[s].kind == "metal" and by_symbol[s].model is None for s in METAL_SYMBOLS)
    assert by_symbol["BTC"].providers == {"coingecko": "bitcoin"}
    assert by_symbol["SPY"].providers == {"alphavantage": "SPY"}
    assert by_symbol["SPY"].cadence == "daily"
    assert {i.kind for i in instruments} >= {"metal", "crypto", "etf", "equity"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[instrument]]\nsymbol = "sol"\nkind = "crypto"', "instrument sol: symbol: String"),
        ('[[instrument]]\nsymbol = "SOL"\nkind = "coin"', "instrument SOL: kind: Input should be"),
        (
            '[[instrument]]\nsymbol = "SOL"\nkind = "crypto"\ncadence = "weekly"',
            "instrument SOL: cadence",
        ),
        (
            '[[instrument]]\nsymbol = "SOL"\nkind = "crypto"\nprovider = {coingecko = "solana"}',
            "instrument SOL: provider: Extra inputs are not permitted",
        ),
        (
            '[[instrument]]\nsymbol = "SOL"\nkind = "crypto"\nproviders = {coingecko = ""}',
            "provider 'coingecko' has an empty id",
        ),
        (
            '[[instrument]]\nsymbol = "SOL"\nkind = "crypto"\nmodel = {x_size = 1}',
            "instrument SOL: model.x_size",
        ),
        (
            '[[instrument]]\nsymbol = "A"\nkind = "fx"\n[[instrument]]\nsymbol = "A"\nkind = "fx"',
            "instrument A is listed twice",
        ),
        ("[[instrument]\n", "not valid TOML"),
    ],
)
def test_a_bad_catalogue_entry_is_named_with_its_field(text: str, message: str) -> None:
    with pytest.raises(CatalogueError, match=r"^test\.toml: ") as info:
        parse_catalogue(text, "test.toml")
    assert message in str(info.value)


def test_the_catalogue_is_the_collection_of_known_symbols_and_refreshes_in_place() -> None:
    catalogue = Catalogue(parse_catalogue('[[instrument]]\nsymbol = "BTC"\nkind = "crypto"'))
    catalogue_with_extra = Catalogue(catalogue.instruments, extra=["XAU"])
    assert "BTC" in catalogue
    assert "SOL" not in catalogue
    assert list(catalogue_with_extra) == ["BTC", "XAU"]
    tick = type("T", (), {"symbol": "SOL", "observed_at": NOW})()
    assert tick_problem(tick, catalogue, NOW) == "unknown symbol 'SOL'; known: BTC"
    catalogue.replace(
        parse_catalogue(
            '[[instrument]]\nsymbol = "SOL"\nkind = "crypto"\nproviders = {coingecko = "solana"}'
        )
    )
    assert tick_problem(tick, catalogue, NOW) is None
    assert catalogue.served_by("coingecko") == {"SOL": "solana"}


def test_modelled_instruments_leave_the_metals_to_their_own_settings() -> None:
    catalogue = Catalogue(load_catalogue_file())
    modelled = {i.symbol: i.model for i in catalogue.modelled()}
    assert not set(modelled) & set(METAL_SYMBOLS)
    assert modelled["SPY"] is not None
    assert modelled["SPY"].x_size == 30


def test_a_bar_round_trips_through_its_topic() -> None:
    bar = _bar(raw={"4. close": "602.90"})
    assert BARS.decode(BARS.encode(bar)) == bar


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("close", 0, "close: Input should be greater than 0"),
        ("open", -1.0, "open: Input should be greater than 0"),
        ("volume", 0, "volume: Input should be greater than 0"),
        ("high", "603.5", "high: Input should be a valid number"),
        ("date", "2026-02-30", "date: Input should be a valid date"),
        ("symbol", "spy", "symbol: String should match pattern"),
    ],
)
def test_the_bar_contract_refuses(field: str, value: object, message: str) -> None:
    good = BARS.encode(_bar()).decode()
    import json

    payload = {**json.loads(good), field: value}
    with pytest.raises(DecodeError, match=message):
        BARS.decode(json.dumps(payload).encode())


def test_a_bar_without_volume_is_fine() -> None:
    assert _bar(volume=None).volume is None


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({}, None),
        ({"date": date(2026, 12, 1)}, None),  # a provider east of UTC: one day ahead is fine
        ({"date": date(2026, 12, 2)}, "date 2026-12-02 is in the future"),
        ({"date": date(1969, 12, 31)}, "date 1969-12-31 is before 1970"),
        ({"symbol": "QQQ"}, "unknown symbol 'QQQ'; not in the instrument catalogue"),
        ({"high": 600.0}, "inconsistent bar: open 601.1, high 600, low 599.8, close 602.9"),
        ({"low": 602.0}, "inconsistent bar: open 601.1, high 603.5, low 602, close 602.9"),
    ],
)
def test_bar_problem(changes: dict[str, object], problem: str | None) -> None:
    known = Catalogue(extra=["SPY"])
    try:
        bar = _bar(**changes)
    except ValidationError:  # pragma: no cover - every case above is a valid contract
        raise
    assert bar_problem(bar, known, NOW) == problem


def test_a_large_catalogue_is_counted_not_listed_in_the_reason() -> None:
    many = Catalogue(extra=[f"EQ{i:03d}" for i in range(500)])
    tick = type("T", (), {"symbol": "SOL", "observed_at": NOW})()
    assert tick_problem(tick, many, NOW) == (
        "unknown symbol 'SOL'; not in the instrument catalogue (500 instruments)"
    )

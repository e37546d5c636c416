"""The sink's fast decoder and the contract (pydantic ``PriceTick``) accept and refuse the same
messages, with the same values and the same reasons.

A corpus of edge cases (the JSON grammar, every constraint, RFC 3339 and its relatives, where
msgspec and pydantic read the same bytes differently) and a few thousand seeded mutations of
valid messages go through both; where msgspec alone would part from the contract, the guard
(``needs_contract``) must send the message to the contract.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from metalcast_core import TICKS, DecodeError, PriceTick
from metalcast_sink.decoding import (
    Tick,
    WireTick,
    decode_tick,
    decode_values,
    needs_contract,
)

GOOD: dict[str, Any] = {
    "schema_version": 1,
    "symbol": "XAU",
    "source": "gold-api",
    "instrument": "spot",
    "observed_at": "2026-11-01T10:05:00Z",
    "price": 2650.25,
    "currency": "USD",
    "fetched_at": "2026-11-01T10:05:01.123456Z",
    "raw": None,
}


def msg(**fields: Any) -> bytes:
    return json.dumps({**GOOD, **fields}).encode()


def with_fragment(fragment: bytes, where: str = "top") -> bytes:
    body = msg()[:-1]
    return body + (b", " + fragment if where == "top" else b', "raw": {' + fragment + b"}") + b"}"


INSTANTS = [
    "2026-11-01T00:00:00Z",
    "2026-11-01T00:00:00z",
    "2026-11-01t00:00:00Z",
    "2026-11-01 00:00:00Z",
    "2026-11-01T00:00Z",
    "2026-11-01T00:00:00.1Z",
    "2026-11-01T00:00:00.123456Z",
    "2026-11-01T00:00:00.1234567Z",
    "2026-11-01T00:00:00.123456789Z",
    "2026-11-01T00:00:00.9999999Z",
    "2026-11-01T00:00:00.9999995+01:00",
    "9999-12-31T23:59:59.9999995Z",
    "2026-11-01T00:00:00.000000000001Z",
    "2026-11-01T00:00:00+0000",
    "2026-11-01T00:00:00+00",
    "2026-11-01T00:00:00-00:00",
    "2026-11-01T00:00:00+23:59",
    "2026-11-01T00:00:00-23:59",
    "2026-11-01T00:00:00+24:00",
    "2026-11-01T00:00:00+00:00:00",
    "2026-11-01T23:59:60Z",
    "2026-11-01T24:00:00Z",
    "2026-02-29T00:00:00Z",
    "2028-02-29T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "2026-11-01T00:00:00,5Z",
    "2026-11-01T00:00:00.Z",
    "2026-11-01",
    "2026-11-01T00:00:00",
    "20261101T000000Z",
    " 2026-11-01T00:00:00Z",
    "2026-11-01T00:00:00Z ",
    "1700000000",
    "1700000000.5",
    "",
]
NUMBERS = [
    "1",
    "0",
    "-0",
    "-0.0",
    "1e15",
    "9.999999999999999e14",
    "999999999999999",
    "1e400",
    "-1e400",
    "1e-400",
    "5e-324",
    "1E2",
    "0.1e1",
    "00.1",
    "1.",
    ".5",
    "+1",
    "-1",
    "2650.123456789012345678901234567890",
    "123456789012345678901234567890",
    "NaN",
    "Infinity",
    "-Infinity",
    "true",
    "null",
    '"1.5"',
    "[1]",
    "{}",
]
STRINGS = [
    "",
    "X",
    "XAU",
    "xau",
    "XAU\n",
    "XAU ",
    "-XAU",
    "XAU.B-1_2",
    "A" * 20,
    "A" * 21,
    "ÄAU",
    "\uff11AU",  # a fullwidth digit one
    "USD",
    "usd",
    "US",
    "USDD",
    "EUR",
    "spot",
    "futures",
    "SPOT",
    "a" * 64,
    "a" * 65,
    "é" * 64,
    "é" * 65,
    "😀" * 64,
    "😀" * 65,
    "a\tb",
    "a\x00b",
    "a/b",
]
FRAGMENTS = [
    b'"x": "a\\qb"',
    b'"x": "a\tb"',
    b'"x": 01',
    b'"x": NaN',
    b'"x": "\\ud800"',
    b'"x": "\\udc00"',
    b'"x": "\\ud83d\\ude00"',
    b'"x": 1e400',
    b'"x": 123456789012345678901234567890',
    b'"x": -123456789012345678901234567890',
    b'"x": 18446744073709551615',
    b'"x": {"a": 1,}',
    b'"x": [1,]',
    b'"x": {1: 2}',
    b'"x": "\xc3\x28"',
    b'"x": "\xc0\xaf"',
    b'"x": "\xed\xa0\x80"',
    b'"x": "\xf4\x90\x80\x80"',
    b'"x": "\xc3\xa9"',
    b'"": 1',
    b'"x": 1, "x": 2',
    b'"x": 1.0, "y": 1E+2, "z": -0',
    b'"x": "2026-11-01T00:00:00.1234567Z"',
    b'"x": ' + b"[" * 150 + b"]" * 150,
    b'"x": ' + b"[" * 199 + b"]" * 199,
    b'"x": ' + b"[" * 200 + b"]" * 200,
    b'"x": ' + b"[" * 500 + b"]" * 500,
    b'"x": ' + b"[" * 5000 + b"]" * 5000,
]


def corpus() -> list[bytes]:
    cases = [msg(), msg(raw={"a": 1, "b": [1.5, None, True, "é"]}), msg(raw={})]
    cases += [msg(observed_at=v) for v in INSTANTS]
    cases += [msg(fetched_at=v) for v in INSTANTS]
    cases += [msg(observed_at=v) for v in (1700000000, 1700000000.5, 1700000000000, True, None)]
    for number in NUMBERS:
        for field in ("price", "schema_version"):
            cases.append(
                msg(**{field: 0}).replace(f'"{field}": 0'.encode(), f'"{field}": {number}'.encode())
            )
    for text in STRINGS:
        cases += [msg(**{field: text}) for field in ("symbol", "source", "currency", "instrument")]
    for field in ("symbol", "source", "observed_at", "price"):
        cases.append(json.dumps({k: v for k, v in GOOD.items() if k != field}).encode())
    for field in ("instrument", "currency", "fetched_at", "raw", "schema_version"):
        cases.append(json.dumps({k: v for k, v in GOOD.items() if k != field}).encode())
        cases.append(msg(**{field: None}))
    for fragment in FRAGMENTS:
        cases += [with_fragment(fragment, "top"), with_fragment(fragment, "raw")]
    odd_raws: list[object] = [[], "x", 1, {"a": 2**70}, {"a": "\x00"}]
    for raw in odd_raws:
        cases.append(msg(raw=raw))
    cases += [
        msg().replace(b'"symbol": "XAU"', b'"symbol": "XAU", "symbol": "XAG"'),
        msg().replace(b'"symbol": "XAU"', b'"symbol": "bad", "symbol": "XAU"'),
        msg().replace(b'"symbol": "XAU"', b'"symbol": "XAU", "symbol": "bad"'),
        msg().replace(b'"price": 2650.25', b'"price": -1, "price": 1'),
        msg().replace(b'"price": 2650.25', b'"price": 1, "price": 2'),
        msg().replace(b'"source": "gold-api"', b'"source": "\\u0067old-api"'),
        msg().replace(b'"source": "gold-api"', b'"source": "gold\\/api"'),
        b"\xef\xbb\xbf" + msg(),
        b" \n\t" + msg() + b" \r\n",
        msg() + b"x",
        msg() + b"\x00",
        msg()[:-1],
        msg()[:-1] + b",}",
        b"[1]",
        b"{}",
        b"null",
        b"",
        b"<html><body>502 Bad Gateway</body></html>",
        b'{"symbol": "XAU", "price": ',
    ]
    return cases


def mutations(seed: int, n: int) -> list[bytes]:
    """Seeded byte-level and value-level mutations of valid messages."""
    rnd = random.Random(seed)
    pool: list[object] = [
        *INSTANTS,
        *STRINGS,
        *(float(x) for x in ("1", "0.5", "1e14")),
        None,
        True,
        [],
        {},
    ]
    bases = [msg(), msg(raw={"k": [1, 2.5, "v"]}), msg(observed_at="2026-11-01T10:05:00+02:00")]
    special = b'{}[]":,\\ .-+eE0123456789tfnuZT\n\x00\xff\xc3'
    out: list[bytes] = []
    for _ in range(n):
        base = bytearray(rnd.choice(bases))
        kind = rnd.random()
        if kind < 0.3:
            field = rnd.choice(list(GOOD))
            out.append(msg(**{field: rnd.choice(pool)}))
            continue
        for _ in range(rnd.randint(1, 3)):
            at = rnd.randrange(len(base) + 1)
            op = rnd.random()
            if op < 0.4 and at < len(base):
                base[at] = rnd.choice(special)
            elif op < 0.7:
                base.insert(at, rnd.choice(special))
            elif at < len(base):
                del base[at]
        out.append(bytes(base))
    return out


def facts(tick: Tick) -> tuple[Any, ...]:
    """Everything a tick says, instants as exact UTC microseconds and their offsets."""

    def instant(t: datetime) -> tuple[int, timedelta | None] | str:
        if abs(t - datetime.now(UTC)) < timedelta(minutes=1):
            return "now (the default)"
        return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1), t.utcoffset()

    return (
        tick.schema_version,
        tick.symbol,
        tick.source,
        tick.instrument,
        instant(tick.observed_at),
        repr(tick.price),
        tick.currency,
        instant(tick.fetched_at),
        repr(tick.raw),
    )


def verdict(decode: Any, value: bytes | None) -> tuple[str, Any]:
    try:
        return "tick", facts(decode(value))
    except DecodeError as exc:
        return "refused", str(exc)


CASES = corpus() + mutations(seed=13, n=4000)


def test_the_fast_decoder_gives_the_contracts_verdict_on_every_case() -> None:
    partings = [
        (value, contract, fast)
        for value in [*CASES, None]
        if (contract := verdict(TICKS.decode, value)) != (fast := verdict(decode_tick, value))
    ]
    assert partings == []
    accepted = sum(verdict(TICKS.decode, v)[0] == "tick" for v in CASES)
    assert 200 < accepted < len(CASES) - 1000  # the corpus holds plenty of both


def test_where_msgspec_alone_parts_from_the_contract_the_guard_sends_it_to_the_contract() -> None:
    decode = msgspec.json.Decoder(WireTick).decode
    gaps = []
    for value in CASES:
        try:
            alone: tuple[str, Any] = ("tick", facts(decode(value)))
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            continue  # refused: the contract decides anyway
        if alone != verdict(TICKS.decode, value):
            gaps.append(value)
    assert gaps, "the corpus no longer shows where msgspec parts from pydantic"
    assert [v for v in gaps if not needs_contract(v)] == []


def test_a_batch_decodes_as_its_messages_one_by_one() -> None:
    values: list[bytes | None] = [*CASES, None]
    batch = decode_values(values)
    assert batch.kept is not None
    one_by_one = [verdict(decode_tick, v) for v in values]
    assert [facts(t) for t in batch.ticks] == [v for kind, v in one_by_one if kind == "tick"]
    assert [values[i] for i in batch.kept] == [
        v for v, (kind, _) in zip(values, one_by_one, strict=True) if kind == "tick"
    ]
    assert batch.refused == [
        (i, reason) for i, (kind, reason) in enumerate(one_by_one) if kind == "refused"
    ]


def test_a_clean_batch_takes_the_fast_path_with_the_contracts_values() -> None:
    values = [
        msg(price=2650.0 + i / 7, observed_at=f"2026-11-01T{i % 24:02}:05:00Z") for i in range(500)
    ]
    batch = decode_values(values)
    assert batch.kept is None
    assert batch.refused == []
    assert all(isinstance(t, WireTick) for t in batch.ticks)
    assert [facts(t) for t in batch.ticks] == [facts(TICKS.decode(v)) for v in values]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (msg(price=0), "price: Input should be greater than 0"),
        (msg(price=-5.0), "price: Input should be greater than 0"),
        (msg(price="2650.1"), "price: Input should be a valid number"),
        (msg(symbol="xau"), "symbol: String should match pattern"),
        (msg(observed_at="2026-11-01T00:00:00"), "observed_at: Input should have timezone info"),
        (b'{"symbol": "XAU", "price": ', "Invalid JSON"),
        (b"<html><body>502 Bad Gateway</body></html>", "Invalid JSON"),
        (b"", "Invalid JSON"),
        (None, "empty message (tombstone)"),
    ],
)
def test_dead_letter_reasons_are_the_contracts_own_words(
    value: bytes | None, expected: str
) -> None:
    with pytest.raises(DecodeError) as fast:
        decode_tick(value)
    with pytest.raises(DecodeError) as contract:
        TICKS.decode(value)
    assert str(fast.value) == str(contract.value)
    assert expected in str(fast.value)


def test_the_struct_has_the_contracts_fields_and_defaults() -> None:
    info = msgspec.inspect.type_info(WireTick)
    assert isinstance(info, msgspec.inspect.StructType)
    fields = {f.name: f for f in info.fields}
    assert list(fields) == list(PriceTick.model_fields)
    for name, field in PriceTick.model_fields.items():
        assert fields[name].required == field.is_required(), name
        if not field.is_required() and field.default_factory is None:
            assert fields[name].default == field.default, name

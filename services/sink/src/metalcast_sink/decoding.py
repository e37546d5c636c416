"""Decoding ``prices.ticks.v1`` values fast, with the contract's verdicts.

The contract is :class:`metalcast_core.PriceTick` (pydantic): it is what producers publish and
what decides whether a message is a tick. The sink's hot path decodes with :class:`WireTick`, a
msgspec Struct with the same fields, defaults and constraints (read from ``PriceTick`` itself),
about twice as fast and untracked by the garbage collector.

The two parsers agree on nearly everything; where they could part, the contract decides:

- whatever msgspec refuses is decoded again by ``PriceTick``, which accepts it (forms msgspec
  does not read: an instant as a Unix time, ``"1"`` for an int, ...) or refuses it with the
  reason that goes to the dead-letter topic, word for word the contract's;
- a value msgspec would read differently goes to ``PriceTick`` without asking msgspec
  (:func:`needs_contract`): invalid UTF-8 in a field msgspec skips, nesting deeper than
  pydantic's limit, fractions of a second past microseconds (pydantic truncates, msgspec
  rounds).

So what lands, with what values, and every refusal's reason are the contract's;
``tests/unit/sink/test_decoding.py`` holds the two decoders to that.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, cast

import msgspec

from metalcast_core import TICKS, DecodeError, PriceTick, utcnow

# Constraints msgspec.Meta spells as pydantic does, and those msgspec's JSON decoding
# implies: a float read only from a JSON number (strict), never NaN or infinite.
_SAME_NAME = frozenset({"gt", "lt", "min_length", "max_length", "pattern"})
_IMPLIED = frozenset({("strict", True), ("allow_inf_nan", False)})


def _declared(item: object) -> dict[str, Any]:
    if dataclasses.is_dataclass(item):
        return {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    return dict(vars(item))


def _meta(field: str) -> msgspec.Meta:
    """msgspec constraints equal to those ``PriceTick`` declares on ``field``.

    A constraint this function does not know is an error at import: the contract then
    changed in a way the fast decoder must be taught, not silently ignore.
    """
    kwargs: dict[str, Any] = {}
    for item in PriceTick.model_fields[field].metadata:
        for name, value in _declared(item).items():
            if value is None or (name, value) in _IMPLIED:
                continue
            if name not in _SAME_NAME:
                raise TypeError(f"PriceTick.{field}: the fast decoder does not know {item!r}")
            kwargs[name] = value
    if "pattern" in kwargs:
        # pydantic's (Rust) `$` matches only at the very end, Python's also before a final
        # newline: `\Z` is the Rust meaning.
        kwargs["pattern"] = re.sub(r"\$$", r"\\Z", kwargs["pattern"])
    return msgspec.Meta(**kwargs)


# An instant with an offset, as pydantic's AwareDatetime.
_Instant = Annotated[datetime, msgspec.Meta(tz=True)]
# The contract's defaults, typed for the Struct.
_DEFAULT_INSTRUMENT: Literal["spot", "futures"] = PriceTick.model_fields["instrument"].default
_DEFAULT_CURRENCY: str = PriceTick.model_fields["currency"].default


class WireTick(msgspec.Struct, kw_only=True, gc=False):
    """``PriceTick`` as the sink's decoder reads it: same fields, defaults and constraints."""

    schema_version: int = 1
    symbol: Annotated[str, _meta("symbol")]
    source: Annotated[str, _meta("source")]
    instrument: Literal["spot", "futures"] = _DEFAULT_INSTRUMENT
    observed_at: _Instant
    price: Annotated[float, _meta("price")]
    currency: Annotated[str, _meta("currency")] = _DEFAULT_CURRENCY
    fetched_at: _Instant = msgspec.field(default_factory=utcnow)
    raw: dict[str, Any] | None = None


_decode_wire = msgspec.json.Decoder(WireTick).decode
_MSGSPEC_REFUSES = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)

# Where the two parsers could read the same bytes differently (module docstring).
_SUBMICROSECOND = re.compile(rb":[0-9]{2}\.[0-9]{7}")
# pydantic refuses nesting deeper than 200; below that, msgspec and pydantic agree. A value
# with fewer brackets cannot nest that deep, and a short one cannot hold that many.
_MAX_BRACKETS = 128
_SHORT = 2 * _MAX_BRACKETS


def needs_contract(value: bytes) -> bool:
    """Whether only ``PriceTick`` may decode ``value`` (msgspec could read it differently)."""
    if not value.isascii():
        try:
            value.decode()
        except UnicodeDecodeError:
            return True
    if len(value) >= _SHORT and value.count(b"{") + value.count(b"[") >= _MAX_BRACKETS:
        return True
    return _SUBMICROSECOND.search(value) is not None


def _batch_needs_a_look(values: Sequence[bytes]) -> bool:
    """Cheap test over a whole batch: ``False`` means no value :func:`needs_contract`."""
    joined = b"\n".join(values)
    return (
        not joined.isascii()
        or max(map(len, values), default=0) >= _SHORT
        or _SUBMICROSECOND.search(joined) is not None
    )


Tick = WireTick | PriceTick


def decode_tick(value: bytes | None) -> Tick:
    """One value as a tick; :class:`DecodeError` with the contract's reason if it is none."""
    if value is not None and not needs_contract(value):
        try:
            return _decode_wire(value)
        except _MSGSPEC_REFUSES:
            pass
    return TICKS.decode(value)


@dataclass(frozen=True, slots=True)
class DecodedValues:
    ticks: list[Tick]
    kept: list[int] | None  # the index of each tick in the values; None: all, in order
    refused: list[tuple[int, str]]  # (index in the values, the contract's reason)


def decode_values(values: Sequence[bytes | None]) -> DecodedValues:
    """Decode a batch of message values: the ticks, and why the others are not ticks."""
    if None not in values:
        present = cast(Sequence[bytes], values)
        if not _batch_needs_a_look(present):
            # The common case: every value a tick msgspec reads exactly as the contract does.
            try:
                return DecodedValues([_decode_wire(v) for v in present], None, [])
            except _MSGSPEC_REFUSES:
                pass  # one at a time, below
    ticks: list[Tick] = []
    kept: list[int] = []
    refused: list[tuple[int, str]] = []
    for i, value in enumerate(values):
        try:
            ticks.append(decode_tick(value))
            kept.append(i)
        except DecodeError as exc:
            refused.append((i, str(exc)))
    return DecodedValues(ticks, kept, refused)


__all__ = ["DecodedValues", "Tick", "WireTick", "decode_tick", "decode_values", "needs_contract"]

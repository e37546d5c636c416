"""Event contracts: one pydantic model per topic.

Rules (docs/events.md): events change by adding optional fields only and carry
``schema_version``; a breaking change is a new type on a ``.v2`` topic. Publishing is strict
(models validate on construction); reading is tolerant of unknown fields.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# Constraints are pydantic-core's own (no Python validators): decoding is the sink's hot path.
# Instants must carry an offset; producers send UTC.
UtcDatetime = AwareDatetime
Symbol = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9._-]{0,19}$")]
# Upper bound: what numeric(24, 8) in prices.ticks holds.
Price = Annotated[float, Field(strict=True, gt=0, lt=1e15, allow_inf_nan=False)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: int = 1


class PriceTick(Event):
    """One observed price. Topic ``prices.ticks.v1``, key = symbol."""

    symbol: Symbol
    source: Annotated[str, Field(min_length=1, max_length=64)]
    instrument: Literal["spot", "futures"] = "spot"
    observed_at: UtcDatetime
    price: Price
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    fetched_at: UtcDatetime = Field(default_factory=utcnow)
    raw: dict[str, Any] | None = None


# Volumes are counts of shares or coins traded: positive, possibly fractional (crypto).
Volume = Annotated[float, Field(strict=True, gt=0, lt=1e18, allow_inf_nan=False)]


class PriceBar(Event):
    """One daily bar (open, high, low, close, volume) as the provider gives it, in the
    provider's currency. Topic ``prices.bars.v1``, key = symbol. The natural key is
    ``(symbol, source, date)``: a replay stores nothing twice."""

    symbol: Symbol
    source: Annotated[str, Field(min_length=1, max_length=64)]
    date: date  # the trading day the provider names (its own time zone, e.g. US/Eastern)
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Volume | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    fetched_at: UtcDatetime = Field(default_factory=utcnow)
    raw: dict[str, Any] | None = None


# A dead letter must fit in one Kafka message (the broker's and producer's 1 MiB default),
# or the poison pill it reports would stop its partition: see DeadLetter.within.
DEAD_LETTER_MAX_BYTES = 900_000


class DeadLetter(Event):
    """Something that could not be decoded or validated. Topic ``prices.ticks.dlq``.

    ``original`` holds the bytes exactly as received; in JSON they are base64url text. An
    original too large for a Kafka message is cut (``truncated``), and its full size and
    sha256 are kept (``original_size``, ``original_sha256``).
    """

    model_config = ConfigDict(
        extra="ignore", frozen=True, ser_json_bytes="base64", val_json_bytes="base64"
    )

    stage: Literal["ingestor", "sink"]
    source: str
    reason: str
    original: bytes
    original_topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    failed_at: UtcDatetime = Field(default_factory=utcnow)
    original_size: int | None = None
    original_sha256: str | None = None
    truncated: bool = False

    def within(self, max_bytes: int = DEAD_LETTER_MAX_BYTES) -> DeadLetter:
        """This dead letter, its original cut so that the whole message is at most
        ``max_bytes`` of JSON (base64 takes 4 bytes per 3); unchanged if it already fits."""
        encoded = len(self.model_dump_json())
        if encoded <= max_bytes:
            return self
        import hashlib

        empty = self.model_copy(
            update={
                "original": b"",
                "truncated": True,
                "original_size": len(self.original),
                "original_sha256": hashlib.sha256(self.original).hexdigest(),
            }
        )
        room = max(0, (max_bytes - len(empty.model_dump_json()) - 8) * 3 // 4)
        return empty.model_copy(update={"original": self.original[:room]})


# A calendar day (an alias: a field named ``date`` shadows the type in its class body).
Day = date
# A FRED-style series id (DGS10, T10YIE, DTWEXBGS, ...).
SeriesId = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9_]{0,39}$")]
# A macro value: finite; rates and indices may be zero or negative.
MacroValue = Annotated[float, Field(strict=True, gt=-1e15, lt=1e15, allow_inf_nan=False)]


class MacroObservation(Event):
    """One observation of a macro series as it was known in one vintage: FRED's
    ``series/observations`` row with its real-time period. Topic ``macro.observations.v1``,
    key = series id. The natural key is ``(series_id, date, realtime_start)``: a revision of
    a past value is a new vintage (a new row), never an overwrite of what was known before.
    ``value`` is None where the provider gives no value (FRED's ``"."``)."""

    series_id: SeriesId
    source: Annotated[str, Field(min_length=1, max_length=64)] = "fred"
    date: date  # the period the value is for
    realtime_start: Day  # first day this value was known (the vintage)
    realtime_end: Day  # last day it was current (FRED's 9999-12-31 for "still current")
    value: MacroValue | None
    fetched_at: UtcDatetime = Field(default_factory=utcnow)
    raw: dict[str, Any] | None = None


class BatchLoaded(Event):
    """Published by the sink after a batch is committed. Topic ``pipeline.batch-loaded.v1``."""

    batch_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    symbols: list[str]
    first_hour: UtcDatetime | None
    last_hour: UtcDatetime | None
    rows_inserted: int
    ticks_received: int
    duplicates: int = 0
    dead_lettered: int = 0
    loaded_at: UtcDatetime = Field(default_factory=utcnow)
    # Which table the batch went to: ticks (hours in first/last_hour), daily bars (the
    # first and last day, at 00:00 UTC, in first/last_hour) or macro observations (symbols
    # are the series ids; the first and last observation date, at 00:00 UTC).
    table: Literal["prices.ticks", "prices.bars", "macro.observations"] = "prices.ticks"


class TrainRequested(Event):
    """One instrument to train after a load. Topic ``pipeline.train-requested.v1``, key =
    symbol: Kafka's consumer-group partitioning gives each instrument to exactly one trainer
    instance. Published by the trainer that read the ``batch-loaded`` event."""

    symbol: Symbol
    trigger_batch_id: uuid.UUID | None = None
    last_hour: UtcDatetime | None = None  # the newest hour (or day) of the load
    requested_at: UtcDatetime = Field(default_factory=utcnow)


class ModelsTrained(Event):
    """Published by the trainer after a run. Topic ``models.trained.v1``."""

    run_id: int
    trigger_batch_id: uuid.UUID | None = None
    versions: dict[str, int] = Field(default_factory=dict)  # symbol -> version
    promoted: list[str] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict)  # symbol -> reason
    finished_at: UtcDatetime = Field(default_factory=utcnow)
    status: str | None = None  # succeeded | partial | failed | unchanged
    decisions: dict[str, str] = Field(default_factory=dict)  # symbol -> why (not) promoted


class ProductionChanged(Event):
    """A production pointer moved, was pinned or unpinned. Topic ``models.production.v1``,
    key = symbol. Published by whoever moved it (trainer, CLI, API) after the commit."""

    symbol: Symbol
    action: Literal["promote", "rollback", "unpin"]
    from_version: int | None = None
    to_version: int
    pinned: bool = False
    changed_by: str
    reason: str | None = None
    changed_at: UtcDatetime = Field(default_factory=utcnow)


__all__ = [
    "DEAD_LETTER_MAX_BYTES",
    "BatchLoaded",
    "DeadLetter",
    "Event",
    "MacroObservation",
    "ModelsTrained",
    "PriceBar",
    "PriceTick",
    "ProductionChanged",
    "TrainRequested",
    "utcnow",
]

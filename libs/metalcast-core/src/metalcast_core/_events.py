"""Event contracts: one pydantic model per topic.

Rules (docs/events.md): events change by adding optional fields only and carry
``schema_version``; a breaking change is a new type on a ``.v2`` topic. Publishing is strict
(models validate on construction); reading is tolerant of unknown fields.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Base64Bytes,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _finite_positive(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError("price must be a finite number greater than zero")
    return float(value)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
Symbol = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9._-]{0,19}$")]
Price = Annotated[StrictFloat | StrictInt, AfterValidator(_finite_positive)]


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


class DeadLetter(Event):
    """Something that could not be decoded or validated. Topic ``prices.ticks.dlq``."""

    stage: Literal["ingestor", "sink"]
    source: str
    reason: str
    original: Base64Bytes
    original_topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    failed_at: UtcDatetime = Field(default_factory=utcnow)


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


class ModelsTrained(Event):
    """Published by the trainer after a run. Topic ``models.trained.v1``."""

    run_id: int
    trigger_batch_id: uuid.UUID | None = None
    versions: dict[str, int] = Field(default_factory=dict)  # symbol -> version
    promoted: list[str] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict)  # symbol -> reason
    finished_at: UtcDatetime = Field(default_factory=utcnow)


__all__ = [
    "BatchLoaded",
    "DeadLetter",
    "Event",
    "ModelsTrained",
    "PriceTick",
    "StrictInt",
    "utcnow",
]

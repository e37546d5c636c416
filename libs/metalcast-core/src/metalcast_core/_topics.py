"""Topic registry: each topic is bound to exactly one event type, here and nowhere else; and
the consumer groups that read them, named once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from metalcast_core._events import (
    BatchLoaded,
    DeadLetter,
    Event,
    MacroObservation,
    ModelsTrained,
    PriceBar,
    PriceTick,
    ProductionChanged,
    TrainRequested,
)

E = TypeVar("E", bound=Event)


class DecodeError(ValueError):
    """A message's bytes are not a valid event of its topic's type."""


@dataclass(frozen=True)
class Topic(Generic[E]):
    name: str
    event_type: type[E]
    partitions: int = 1
    # Topic configs set when the topic is created (None: the broker's default).
    retention_ms: int | None = None
    max_message_bytes: int | None = None

    def configs(self) -> dict[str, str]:
        """``retention.ms`` and ``max.message.bytes`` as topic configs, where set."""
        configs = {}
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        if self.max_message_bytes is not None:
            configs["max.message.bytes"] = str(self.max_message_bytes)
        return configs

    def encode(self, event: E) -> bytes:
        if not isinstance(event, self.event_type):
            raise TypeError(f"{self.name} carries {self.event_type.__name__}, not {type(event)}")
        return event.model_dump_json().encode()

    def decode(self, data: bytes | None) -> E:
        if data is None:
            raise DecodeError("empty message (tombstone)")
        try:
            return self.event_type.model_validate_json(data)
        except ValidationError as exc:
            raise DecodeError(_summarise(exc)) from exc


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or "<message>"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


_DAY_MS = 24 * 3600 * 1000
# Ticks: the broker's retention (7 days); a message up to 4 MiB is admitted (the sink's
# read-ahead per partition), so that whatever a producer manages to write, however malformed,
# reaches the sink and is dead-lettered there instead of failing somewhere out of sight.
TICKS: Topic[PriceTick] = Topic(
    "prices.ticks.v1", PriceTick, partitions=6, max_message_bytes=4 << 20
)
# Dead letters are kept 30 days, for `metalcast sink dlq list|show|replay`; each fits the
# broker's default 1 MiB message limit (DeadLetter.within cuts a larger original).
TICKS_DLQ: Topic[DeadLetter] = Topic(
    "prices.ticks.dlq", DeadLetter, partitions=1, retention_ms=30 * _DAY_MS
)
BARS: Topic[PriceBar] = Topic("prices.bars.v1", PriceBar, partitions=6)
BARS_DLQ: Topic[DeadLetter] = Topic(
    "prices.bars.dlq", DeadLetter, partitions=1, retention_ms=30 * _DAY_MS
)
# Macro observations (FRED series with their vintages), key = series id.
MACRO: Topic[MacroObservation] = Topic("macro.observations.v1", MacroObservation, partitions=3)
MACRO_DLQ: Topic[DeadLetter] = Topic(
    "macro.observations.dlq", DeadLetter, partitions=1, retention_ms=30 * _DAY_MS
)
BATCH_LOADED: Topic[BatchLoaded] = Topic("pipeline.batch-loaded.v1", BatchLoaded, partitions=1)
TRAIN_REQUESTED: Topic[TrainRequested] = Topic(
    "pipeline.train-requested.v1", TrainRequested, partitions=12
)
MODELS_TRAINED: Topic[ModelsTrained] = Topic("models.trained.v1", ModelsTrained, partitions=1)
PRODUCTION_CHANGED: Topic[ProductionChanged] = Topic(
    "models.production.v1", ProductionChanged, partitions=1
)

ALL_TOPICS: tuple[Topic[Any], ...] = (
    TICKS,
    TICKS_DLQ,
    BARS,
    BARS_DLQ,
    MACRO,
    MACRO_DLQ,
    BATCH_LOADED,
    TRAIN_REQUESTED,
    MODELS_TRAINED,
    PRODUCTION_CHANGED,
)

# Consumer groups, named once: the services' default ``group_id`` and the watch's lag checks
# read these. SINK_GROUP consumes TICKS; TRAINER_GROUP consumes BATCH_LOADED.
SINK_GROUP = "metalcast-sink"
# BARS is consumed by the sink's bar loop (`metalcast sink bars`) in a group of its own.
BAR_SINK_GROUP = "metalcast-sink-bars"
TRAINER_GROUP = "metalcast-trainer"
# MACRO is consumed by the sink's macro loop (`metalcast sink macro`) in a group of its own.
MACRO_SINK_GROUP = "metalcast-sink-macro"
# TRAIN_REQUESTED is consumed by every trainer instance in this group: each gets a share of
# the instruments (their partitions).
INSTRUMENT_TRAINER_GROUP = "metalcast-trainer-instruments"

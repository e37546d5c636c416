"""metalcast's shared library: settings, event contracts and Kafka/PostgreSQL/S3 access."""

from metalcast_core._db import connect, create_pool, migrate, migration_files
from metalcast_core._events import (
    DEAD_LETTER_MAX_BYTES,
    BatchLoaded,
    DeadLetter,
    Event,
    ModelsTrained,
    PriceTick,
    ProductionChanged,
    utcnow,
)
from metalcast_core._kafka import (
    ensure_topics,
    make_consumer,
    make_producer,
    publish_once,
    wait_for_kafka,
)
from metalcast_core._lifecycle import run_until_signal
from metalcast_core._logging import configure_logging
from metalcast_core._observe import Health, HealthCheck, StatusServer, serve_status, since
from metalcast_core._settings import (
    KafkaSettings,
    PostgresSettings,
    S3Settings,
    ServiceSettings,
)
from metalcast_core._storage import ensure_buckets, make_s3_client
from metalcast_core._symbols import (
    DEFAULT_KNOWN_SYMBOLS,
    METAL_SYMBOLS,
    METALS,
    METALS_BY_SYMBOL,
    Metal,
    metal_for,
)
from metalcast_core._topics import (
    ALL_TOPICS,
    BATCH_LOADED,
    MODELS_TRAINED,
    PRODUCTION_CHANGED,
    SINK_GROUP,
    TICKS,
    TICKS_DLQ,
    TRAINER_GROUP,
    DecodeError,
    Topic,
)
from metalcast_core._validation import tick_problem

__all__ = [
    "ALL_TOPICS",
    "BATCH_LOADED",
    "DEAD_LETTER_MAX_BYTES",
    "DEFAULT_KNOWN_SYMBOLS",
    "METALS",
    "METALS_BY_SYMBOL",
    "METAL_SYMBOLS",
    "MODELS_TRAINED",
    "PRODUCTION_CHANGED",
    "SINK_GROUP",
    "TICKS",
    "TICKS_DLQ",
    "TRAINER_GROUP",
    "BatchLoaded",
    "DeadLetter",
    "DecodeError",
    "Event",
    "Health",
    "HealthCheck",
    "KafkaSettings",
    "Metal",
    "ModelsTrained",
    "PostgresSettings",
    "PriceTick",
    "ProductionChanged",
    "S3Settings",
    "ServiceSettings",
    "StatusServer",
    "Topic",
    "configure_logging",
    "connect",
    "create_pool",
    "ensure_buckets",
    "ensure_topics",
    "make_consumer",
    "make_producer",
    "make_s3_client",
    "metal_for",
    "migrate",
    "migration_files",
    "publish_once",
    "run_until_signal",
    "serve_status",
    "since",
    "tick_problem",
    "utcnow",
    "wait_for_kafka",
]

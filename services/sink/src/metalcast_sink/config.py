"""The sink's one settings object."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

from metalcast_core import BAR_SINK_GROUP, MACRO_SINK_GROUP, SINK_GROUP, ServiceSettings


class SinkSection(BaseModel):
    group_id: str = SINK_GROUP
    max_batch: int = Field(default=50_000, ge=1)
    batch_timeout_ms: int = Field(default=500, ge=1)
    # Bytes fetched per partition per request (the read-ahead). Large enough that the sink
    # rarely waits on a fetch round trip while draining a backlog (bench/bench_ingest.py:
    # 1 MiB ~57k ticks/s, 2 MiB ~78k, 4 MiB ~90k on 2 cores); a batch may then hold fewer
    # partitions (ticks are keyed by symbol), so an hourly row may be written once per metal.
    max_partition_fetch_bytes: int = Field(default=4 << 20, ge=1 << 16)
    # Back-off while the database is unreachable (the batch is kept and retried).
    db_retry_initial_s: float = Field(default=0.5, gt=0)
    db_retry_max_s: float = Field(default=30.0, gt=0)
    # The outbox relay: every relay_every_s, events still unpublished relay_after_s after
    # their batch's commit are published (the normal path publishes right after the commit).
    relay_every_s: float = Field(default=30.0, gt=0)
    relay_after_s: float = Field(default=60.0, ge=0)
    # How long a batch's Kafka side (offset commit, event) may take after its commit before
    # the writer goes on without it (the event then goes out from the outbox).
    kafka_side_timeout_s: float = Field(default=30.0, gt=0)
    # GET /metrics and /healthz (metalcast_sink.observe) on this address; port 0: none.
    # Compose sets the host to 0.0.0.0 so that Prometheus and the watch can reach it.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9101, ge=0, le=65535)
    # The consumer lag is read from Kafka this often.
    lag_every_s: float = Field(default=5.0, gt=0)
    # /healthz fails when no batch was written for this long while messages wait (or
    # Kafka's offsets could not be read for this long).
    stall_after_s: float = Field(default=120.0, gt=0)
    # The instrument catalogue (ref.instruments) is read again this often: an instrument
    # added with `metalcast instruments add` is accepted within this many seconds.
    catalogue_refresh_s: float = Field(default=30.0, gt=0)
    # The daily-bar loop (`metalcast sink bars`): its own consumer group on prices.bars.v1.
    bars_group_id: str = BAR_SINK_GROUP
    # The macro loop (`metalcast sink macro`): its own group on macro.observations.v1.
    macro_group_id: str = MACRO_SINK_GROUP


class SinkSettings(ServiceSettings):
    connects_to: ClassVar[frozenset[str]] = frozenset({"postgres", "kafka"})

    sink: SinkSection = SinkSection()

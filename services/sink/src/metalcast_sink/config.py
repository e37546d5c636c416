"""The sink's one settings object."""

from __future__ import annotations

from pydantic import BaseModel, Field

from metalcast_core import ServiceSettings


class SinkSection(BaseModel):
    group_id: str = "metalcast-sink"
    max_batch: int = Field(default=50_000, ge=1)
    batch_timeout_ms: int = Field(default=500, ge=1)
    # Bytes fetched per partition per request. Small enough that a batch draws from every
    # partition: ticks are keyed by symbol, so the metals of the same hours then land in one
    # batch and each hourly row is written once, not once per metal.
    max_partition_fetch_bytes: int = Field(default=1 << 20, ge=1 << 16)
    # Back-off while the database is unreachable (the batch is kept and retried).
    db_retry_initial_s: float = Field(default=0.5, gt=0)
    db_retry_max_s: float = Field(default=30.0, gt=0)


class SinkSettings(ServiceSettings):
    sink: SinkSection = SinkSection()

"""The watch's one settings object: the ``watch`` section (thresholds, the groups it measures).

e.g. ``METALCAST_WATCH__MAX_TICK_AGE_MINUTES``, ``METALCAST_WATCH__MAX_SINK_LAG``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

from metalcast_core import MACRO_SINK_GROUP, SINK_GROUP, TRAINER_GROUP, ServiceSettings


class WatchSection(BaseModel):
    # The newest tick of every metal must be younger than this.
    max_tick_age_minutes: float = Field(default=180.0, gt=0)
    # The consumer groups whose lag is measured: the sink's and the trainer's (their names
    # live once, in metalcast_core's topic registry).
    sink_group: str = SINK_GROUP
    trainer_group: str = TRAINER_GROUP
    max_sink_lag: int = Field(default=10_000, ge=0)
    max_trainer_lag: int = Field(default=10, ge=0)
    # Whether a last training run that failed fails the watch.
    fail_on_failed_training: bool = True
    # A training run still 'running' after this long is stuck (its trainer died or hangs).
    max_run_minutes: float = Field(default=30.0, gt=0)
    # A batch-loaded event still unpublished this long after its commit: the sink's outbox
    # relay is not draining (its relay publishes after about a minute).
    max_outbox_age_minutes: float = Field(default=10.0, gt=0)
    # Whether the dead-letter topic growing since the previous watch run fails the watch.
    fail_on_dlq_growth: bool = True
    # The workers' own /healthz (each serves one on its METALCAST_<SECTION>__METRICS_PORT),
    # asked when set, e.g. http://sink:9101/healthz in compose: anything but 200 is a problem,
    # with the reason the worker gives.
    sink_health_url: str | None = None
    trainer_health_url: str | None = None
    ingestor_health_url: str | None = None
    health_timeout_s: float = Field(default=5.0, gt=0)
    # Macro series (macro.series, docs/macro.md): a series' newest observation may be as old
    # as its period (daily 1, weekly 7, monthly 31, quarterly 92 days) plus its publication
    # lag plus this slack (weekends and US holidays) before it is stale.
    macro_slack_days: int = Field(default=4, ge=0)
    # Whether a series of macro.series with no observation at all fails the watch (set it
    # where the macro pull runs; without a FRED key it never fills).
    require_macro: bool = False
    # The macro sink's consumer group, whose lag on macro.observations.v1 is measured.
    macro_sink_group: str = MACRO_SINK_GROUP

    def health_urls(self) -> dict[str, str]:
        """The workers whose /healthz is asked: name -> URL."""
        urls = {
            "sink": self.sink_health_url,
            "trainer": self.trainer_health_url,
            "ingestor": self.ingestor_health_url,
        }
        return {name: url for name, url in urls.items() if url}


class WatchSettings(ServiceSettings):
    connects_to: ClassVar[frozenset[str]] = frozenset({"postgres", "kafka"})

    watch: WatchSection = WatchSection()

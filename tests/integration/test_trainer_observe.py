"""The trainer's /metrics and /healthz on the real stack: the runs it reports are the runs it
recorded, each metal's backtest and fit timed; the door closes with the trainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metalcast_core import METALS, KafkaSettings, PostgresSettings, S3Settings
from tests.integration.test_trainer import (
    backfill_and_sink,
    finished_runs,
    serving,
    trainer_settings,
    wait_for_runs,
)
from tests.support import free_port, http_get, port_closed, scrape

pytestmark = pytest.mark.integration


async def test_metrics_and_health_report_the_recorded_runs(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    port = free_port()
    settings = trainer_settings(
        pg_settings, kafka_settings, s3_settings, tmp_path, metrics_port=port
    )
    async with serving(settings):
        await backfill_and_sink(pg_settings, kafka_settings)  # publishes batch-loaded
        await wait_for_runs(pg_settings, 1)
        metrics = await scrape(port)
        status, body = await http_get(port, "/healthz")
    [run] = await finished_runs(pg_settings)

    assert run["status"] == "succeeded"
    assert metrics[("metalcast_trainer_runs_total", (("status", "succeeded"),))] == 1
    assert metrics[("metalcast_trainer_run_in_progress", ())] == 0
    assert metrics[("metalcast_trainer_last_success_timestamp_seconds", ())] == pytest.approx(
        run["finished_at"].timestamp(), abs=5
    )
    assert metrics[("metalcast_trainer_events_received_total", ())] >= 1
    for metal in METALS:
        for stage in ("backtest", "fit"):
            key = (
                "metalcast_trainer_instrument_duration_seconds_count",
                (("stage", stage), ("symbol", metal.symbol)),
            )
            assert metrics[key] == 1, key
    assert status == 200
    health = json.loads(body)
    assert health["status"] == "ok"
    assert health["last_run"] == run["id"]
    assert health["last_status"] == "succeeded"
    assert await port_closed(port)

"""Composition root of the trainer: settings → pool, S3, Kafka clients, runner, loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaProducer

from metalcast_core import (
    BATCH_LOADED,
    create_pool,
    ensure_buckets,
    ensure_topics,
    make_consumer,
    make_producer,
    make_s3_client,
    serve_status,
    wait_for_kafka,
)
from metalcast_models import single_threaded_blas
from metalcast_trainer.config import TrainerSettings
from metalcast_trainer.observe import TrainerObserver
from metalcast_trainer.runner import RunReport, TrainingRunner
from metalcast_trainer.service import Trainer, publish_report


@asynccontextmanager
async def _runner(
    settings: TrainerSettings,
) -> AsyncIterator[tuple[TrainingRunner, AIOKafkaProducer]]:
    await wait_for_kafka(settings.kafka)  # a broker restarting: wait rather than exit
    await ensure_topics(settings.kafka)
    s3 = make_s3_client(settings.s3)
    # Its S3 identity sees the models bucket only.
    await asyncio.to_thread(ensure_buckets, s3, settings.s3, (settings.s3.models_bucket,))
    pool = await create_pool(settings.postgres)
    producer = make_producer(settings.kafka)
    try:
        with single_threaded_blas():  # many tiny fits: one BLAS thread each
            await producer.start()
            runner = TrainingRunner(settings, pool, s3)
            await runner.close_interrupted()
            yield runner, producer
    finally:
        await producer.stop()
        await pool.close()


async def run_trainer(
    settings: TrainerSettings,
    stop: asyncio.Event,
    consumer_options: Mapping[str, Any] | None = None,
) -> list[RunReport]:
    """Serve until ``stop``: train on every (coalesced) batch-loaded event, with ``/metrics``
    and ``/healthz`` on ``metrics_host:metrics_port`` meanwhile."""
    cfg = settings.trainer
    async with _runner(settings) as (runner, producer):
        await asyncio.to_thread(runner.warm_up)
        consumer = make_consumer(
            settings.kafka,
            [settings.kafka.topic_name(BATCH_LOADED)],
            group_id=settings.trainer.group_id,
            **(consumer_options or {}),
        )
        await consumer.start()
        try:
            seen = TrainerObserver()
            trainer = Trainer(settings, consumer, producer, runner, observer=seen)
            async with serve_status(
                "trainer",
                seen.registry,
                lambda: seen.health(cfg.max_run_s, cfg.stall_after_s, cfg.failed_runs_unhealthy),
                cfg.metrics_host,
                cfg.metrics_port,
            ):
                await trainer.serve(stop)
            return trainer.runs
        finally:
            await consumer.stop()


async def train_once(settings: TrainerSettings) -> RunReport:
    """Train now on the current window, record and publish the run, and return."""
    async with _runner(settings) as (runner, producer):
        report = await runner.run("manual")
        await publish_report(producer, settings.kafka, report, None)
        return report

"""Composition root of the trainer: settings → pool, S3, Kafka clients, runner, loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaProducer

from metalcast_core import (
    BATCH_LOADED,
    TRAIN_REQUESTED,
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
from metalcast_trainer.instruments import LazyProcessPool
from metalcast_trainer.observe import TrainerObserver
from metalcast_trainer.runner import RunReport, TrainingRunner
from metalcast_trainer.service import InstrumentTrainer, Trainer, publish_report
from metalcast_trainer.valuation import ValuationTrainer


@asynccontextmanager
async def _runners(
    settings: TrainerSettings, count: int = 1
) -> AsyncIterator[tuple[list[TrainingRunner], AIOKafkaProducer, ValuationTrainer]]:
    """``count`` runners sharing the pool, S3, the producer and the process pool for
    instruments' backtests (``trainer.workers``); each loop needs its own runner."""
    await wait_for_kafka(settings.kafka)  # a broker restarting: wait rather than exit
    await ensure_topics(settings.kafka)
    s3 = make_s3_client(settings.s3)
    # Its S3 identity sees the models bucket only.
    await asyncio.to_thread(ensure_buckets, s3, settings.s3, (settings.s3.models_bucket,))
    pool = await create_pool(settings.postgres)
    producer = make_producer(settings.kafka)
    workers = settings.trainer.workers
    executor = LazyProcessPool(workers) if workers else None
    try:
        with single_threaded_blas():  # many tiny fits: one BLAS thread each
            await producer.start()
            runners = [TrainingRunner(settings, pool, s3, executor) for _ in range(count)]
            await runners[0].close_interrupted()
            yield runners, producer, ValuationTrainer(settings, pool, s3)
    finally:
        await producer.stop()
        await pool.close()
        if executor is not None:
            await asyncio.to_thread(executor.shutdown)


@asynccontextmanager
async def _runner(
    settings: TrainerSettings,
) -> AsyncIterator[tuple[TrainingRunner, AIOKafkaProducer]]:
    async with _runners(settings) as (runners, producer, _):
        yield runners[0], producer


async def run_trainer(
    settings: TrainerSettings,
    stop: asyncio.Event,
    consumer_options: Mapping[str, Any] | None = None,
) -> list[RunReport]:
    """Serve until ``stop``: train on every (coalesced) batch-loaded event, with ``/metrics``
    and ``/healthz`` on ``metrics_host:metrics_port`` meanwhile; with
    ``trainer.dispatch_instruments``, also this instance's share of the instruments'
    train requests (``pipeline.train-requested.v1``), in a consumer group of their own."""
    cfg = settings.trainer
    dispatch = cfg.dispatch_instruments
    async with _runners(settings, 2 if dispatch else 1) as (runners, producer, valuation):
        await asyncio.to_thread(runners[0].warm_up)
        # The instruments' process pool, started meanwhile where the catalogue has modelled
        # instruments: its workers' start (sktime's imports) is not the first load's wait.
        warming = asyncio.create_task(runners[-1].start_pool(), name="warm-pool")
        consumer = make_consumer(
            settings.kafka,
            [settings.kafka.topic_name(BATCH_LOADED)],
            group_id=settings.trainer.group_id,
            **(consumer_options or {}),
        )
        requests = (
            make_consumer(
                settings.kafka,
                [settings.kafka.topic_name(TRAIN_REQUESTED)],
                group_id=settings.trainer.instrument_group_id,
                **(consumer_options or {}),
            )
            if dispatch
            else None
        )
        await consumer.start()
        try:
            seen = TrainerObserver()
            trainer = Trainer(
                settings,
                consumer,
                producer,
                runners[0],
                runners[0] if dispatch else None,
                observer=seen,
                valuation=valuation if cfg.valuation.enabled else None,
            )
            async with serve_status(
                "trainer",
                seen.registry,
                lambda: seen.health(cfg.max_run_s, cfg.stall_after_s, cfg.failed_runs_unhealthy),
                cfg.metrics_host,
                cfg.metrics_port,
            ):
                if requests is None:
                    await trainer.serve(stop)
                    return trainer.runs
                await requests.start()
                try:
                    instruments = InstrumentTrainer(settings, requests, producer, runners[1])
                    await asyncio.gather(trainer.serve(stop), instruments.serve(stop))
                    return trainer.runs + instruments.runs
                finally:
                    await requests.stop()
        finally:
            await consumer.stop()
            if not warming.done():
                warming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warming


async def train_once(settings: TrainerSettings) -> RunReport:
    """Train now on the current window, record and publish the run, and return."""
    async with _runner(settings) as (runner, producer):
        report = await runner.run("manual")
        await publish_report(producer, settings.kafka, report, None)
        return report


async def value_once(settings: TrainerSettings) -> RunReport:
    """Retrain the gold valuation model now (docs/valuation.md), record and publish the run."""
    async with _runners(settings) as (_, producer, valuation):
        report = await valuation.run("manual")
        await publish_report(producer, settings.kafka, report, None)
        return report

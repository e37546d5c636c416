"""The trainer's latency on the local stack: the first run after a 30-day backfill, and the
steady state (a warm trainer, one new hour), each beside the bare compute in-process.

One run, with a database, topics and a bucket of its own (dropped at the end):

1. a 720-hour (``--hours``) simulated backfill through the real path (ingestor → Kafka →
   sink → ``analytics.metal_prices``);
2. baselines, in-process, no I/O, on the same data: the four fits alone (``Model.train``,
   the data scientists' ARIMA on the same windows); the first run's compute alone (per
   metal: ``run_backtest`` of every default candidate at 168 origins, ``score``,
   ``decide``, ``fit_series`` of the chosen one); one new hour's compute alone (the same,
   with the forecasts of the hour before as the cache);
3. (b) the first run: ``TrainingRunner.run`` with an empty forecast cache (after
   ``warm_up``, as the service does before it consumes), with its ``RunReport.timings``;
4. (a) the steady state: the trainer service (``run_trainer``) consumes
   ``pipeline.batch-loaded.v1``. Before each event the bench inserts the next hour for all
   four metals into ``analytics.metal_prices`` (a random walk from the last prices, as the
   sink would write it), so every window moves and every run fits; the clock runs from
   ``send_and_wait`` of the event until the run's row in ``ml.training_runs`` is finished
   (its status and timings then recorded: a decision and a version for each metal). Then
   the last event is delivered again (no new hour): the run is ``unchanged``, and that
   latency is printed on its own line. One warm-up event (the consumer joining its group)
   is not counted. The service listens on topics of its own, so the backfill's events do
   not reach it.

Everything runs with one BLAS thread (``single_threaded_blas``, as the trainer service).
Figures include whatever else the machine is doing: the load average is printed.

Usage: ``uv run python bench/bench_trainer_latency.py [--events 20] [--redelivered 5]``.
Aims: (a) p50 ≤ 1 s, max ≤ 2 s; (b) ≤ 30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import numpy as np
import pandas as pd

from metalcast import stack
from metalcast.stack.world import World, create_topics, delete_topics, isolated_world
from metalcast_core import (
    BATCH_LOADED,
    METALS,
    BatchLoaded,
    KafkaSettings,
    create_pool,
    ensure_topics,
    make_producer,
    make_s3_client,
    metal_for,
)
from metalcast_ingestor import bootstrap as ingestor
from metalcast_ingestor.config import IngestorSettings
from metalcast_models import FrameTrainingData, Model, single_threaded_blas
from metalcast_models.backtest import (
    CacheKey,
    Candidate,
    OriginForecast,
    Rules,
    Series,
    decide,
)
from metalcast_models.data import fetch_history
from metalcast_models.families import get_family
from metalcast_models.fitting import fit_series
from metalcast_sink.bootstrap import run_sink
from metalcast_sink.config import SinkSettings
from metalcast_trainer.bootstrap import run_trainer
from metalcast_trainer.config import TrainerSection, TrainerSettings
from metalcast_trainer.evaluation import backtest_and_score
from metalcast_trainer.runner import TrainingRunner

if TYPE_CHECKING:
    pass

TICKERS = [m.ticker for m in METALS]
FAST = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
POLL_S = 0.005  # how often the run's row is looked at: up to this much is added to each figure
AIM_STEADY_P50_S, AIM_STEADY_MAX_S, AIM_FIRST_S = 1.0, 2.0, 30.0
TIMING_KEYS = ("load_s", "backtest_s", "fit_s", "store_s", "total_s")


# --- the trainer's compute alone, in-process --------------------------------------------


def _setup(cfg: TrainerSection) -> tuple[list[Candidate], Rules]:
    """The trainer's own candidates and rules."""
    return cfg.build_candidates(), cfg.rules()


def _series(observed: pd.Series) -> Series:
    return Series(
        observed.to_numpy(dtype=float),
        [ts.to_pydatetime() for ts in pd.DatetimeIndex(observed.index)],
    )


def compute_alone(
    cfg: TrainerSection,
    history: Mapping[str, pd.Series],
    caches: Mapping[str, Mapping[CacheKey, OriginForecast]] | None = None,
) -> tuple[float, int, dict[str, dict[CacheKey, OriginForecast]]]:
    """What one run computes for every metal, without I/O: backtest (with ``caches``),
    scores, decision, and the fit of the chosen configuration. Returns the seconds, the
    origins fitted, and every forecast as the cache the next run would read."""
    candidates, rules = _setup(cfg)
    out: dict[str, dict[CacheKey, OriginForecast]] = {}
    began = time.perf_counter()
    fitted = 0
    for ticker, observed in history.items():
        series = _series(observed)
        bt, scores = backtest_and_score(cfg, candidates, series, (caches or {}).get(ticker))
        fitted += bt.fitted
        chosen = decide(candidates, scores, None, rules=rules).chosen
        result = fit_series(
            ticker, observed, cfg.x_size, get_family(chosen.family), dict(chosen.hyperparameters)
        )
        if not result.ok:
            raise RuntimeError(f"{ticker}: {result.reason}")
        out[ticker] = {(key, f.origin): f for key, fs in bt.forecasts.items() for f in fs}
    return time.perf_counter() - began, fitted, out


# --- the stack ---------------------------------------------------------------------------


async def _insert_next_hour(conn: asyncpg.Connection, rng: np.random.Generator) -> datetime:
    """The next hour for all four metals: each last price times exp(N(0, 0.2%))."""
    columns = [metal_for(t).column for t in TICKERS]
    last = await conn.fetchrow(
        f"SELECT ts, {', '.join(columns)} FROM analytics.metal_prices ORDER BY ts DESC LIMIT 1"
    )
    assert last is not None
    hour: datetime = last["ts"] + timedelta(hours=1)
    prices = [float(last[c]) * math.exp(rng.normal(0, 0.002)) for c in columns]
    await conn.execute(
        f"INSERT INTO analytics.metal_prices (ts, {', '.join(columns)}) "
        f"VALUES ($1, {', '.join(f'${i + 2}' for i in range(len(columns)))})",
        hour,
        *prices,
    )
    return hour


async def _newest_run(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM ml.training_runs"))


async def _await_run(conn: asyncpg.Connection, after: int) -> asyncpg.Record:
    while True:
        row = await conn.fetchrow(
            "SELECT r.id, r.status, r.timings, (SELECT count(*) FROM ml.training_results AS t "
            "WHERE t.run_id = r.id AND t.status <> 'failed') AS decided "
            "FROM ml.training_runs AS r WHERE r.id > $1 AND r.status <> 'running' "
            "ORDER BY r.id LIMIT 1",
            after,
        )
        if row is not None:
            return row
        await asyncio.sleep(POLL_S)


def _timings(row: asyncpg.Record) -> dict[str, float]:
    raw = row["timings"]
    return {k: float(v) for k, v in (json.loads(raw) if isinstance(raw, str) else raw).items()}


async def _event(
    producer: Any, conn: asyncpg.Connection, kafka: KafkaSettings, event: BatchLoaded
) -> tuple[float, asyncpg.Record]:
    """Seconds from publishing ``event`` to the next run's row being finished."""
    after = await _newest_run(conn)
    began = time.perf_counter()
    await producer.send_and_wait(kafka.topic_name(BATCH_LOADED), BATCH_LOADED.encode(event))
    row = await _await_run(conn, after)
    return time.perf_counter() - began, row


def _hour_event(hour: datetime) -> BatchLoaded:
    return BatchLoaded(
        symbols=[metal_for(t).symbol for t in TICKERS],
        first_hour=hour,
        last_hour=hour,
        rows_inserted=1,
        ticks_received=len(TICKERS),
    )


def _p50_max(values: Sequence[float]) -> str:
    return f"p50 {statistics.median(values):.3f} s, max {max(values):.3f} s"


def _load(began: float) -> str:
    """The 1-minute load average at the start and now: other work on the machine."""
    return f"{began:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# --- the run -----------------------------------------------------------------------------


async def main(events: int, redelivered: int, hours: int) -> None:
    stack.up()
    async with isolated_world(label="bench_trainer") as own:
        # The backfill's topics, and the trainer service's own (the bench publishes there).
        loading = await create_topics(own.kafka, f"{own.kafka.topic_prefix}load.")
        try:
            await _measure(own, loading, events, redelivered, hours)
        finally:
            await delete_topics(loading)


async def _measure(
    own: World, loading: KafkaSettings, events: int, redelivered: int, hours: int
) -> None:
    pg, kafka, s3 = own.postgres, own.kafka, own.s3
    cfg = TrainerSection(
        group_id=f"bench-{own.database}",
        work_dir=Path(tempfile.mkdtemp(prefix="bench-trainer-")),
    )
    settings = TrainerSettings(postgres=pg, kafka=kafka, s3=s3, trainer=cfg)
    began = os.getloadavg()[0]

    # 1. the backfill, through ingestor, Kafka and sink
    t = time.perf_counter()
    end = ingestor.current_hour() + timedelta(hours=1)
    await ingestor.backfill(
        IngestorSettings(postgres=pg, kafka=loading),
        "simulated",
        end - timedelta(hours=hours),
        end,
    )
    await run_sink(SinkSettings(postgres=pg, kafka=loading), until_idle=True, consumer_options=FAST)
    conn = await asyncpg.connect(pg.url)
    try:
        rows = await conn.fetchval("SELECT count(*) FROM analytics.metal_prices")
        need = cfg.x_size + cfg.backtest_origins + 1
        frame = await fetch_history(conn, cfg.tickers, need + 1)
    finally:
        await conn.close()
    print(
        f"backfill: {hours} h simulated → ingestor → Kafka → sink: {rows} hourly rows "
        f"in {time.perf_counter() - t:.1f} s (setup, not measured against an aim)"
    )
    history = {ticker: frame[ticker].dropna() for ticker in cfg.tickers}
    window = frame[cfg.tickers].tail(cfg.x_size)

    # 2. baselines, in-process
    # Warm: every family's first fit in this process (lazy imports), on a few origins.
    compute_alone(cfg, {k: v.tail(cfg.x_size + 10) for k, v in history.items()})
    Model(TICKERS, cfg.x_size, 1, data_source=FrameTrainingData(window)).train()
    fits = []
    for _ in range(events):
        t = time.perf_counter()
        Model(TICKERS, cfg.x_size, 1, data_source=FrameTrainingData(window)).train()
        fits.append(time.perf_counter() - t)
    # The first run's compute, one hour before the end; its forecasts are the cache
    # for the newest hour's compute.
    before = {k: v.iloc[:-1] for k, v in history.items()}
    first_alone, first_fitted, caches = compute_alone(cfg, before)
    hour_alone = [compute_alone(cfg, history, caches)[:2] for _ in range(events)]

    # 3. (b) the first run after the backfill: an empty forecast cache
    pool = await create_pool(pg)
    try:
        runner = TrainingRunner(settings, pool, make_s3_client(s3))
        t = time.perf_counter()
        await asyncio.to_thread(runner.warm_up)
        warm_s = time.perf_counter() - t
        t = time.perf_counter()
        first = await runner.run("manual")
        first_s = time.perf_counter() - t
    finally:
        await pool.close()
    if first.status != "succeeded":
        raise RuntimeError(f"first run {first.status}: {first.error or first.failed}")

    # 4. (a) the service, one new hour per event; then the same event again
    await ensure_topics(kafka)
    stop = asyncio.Event()
    task = asyncio.create_task(run_trainer(settings, stop, consumer_options=FAST))
    producer = make_producer(kafka)
    await producer.start()
    conn = await asyncpg.connect(pg.url)
    rng = np.random.default_rng(0)
    steady: list[tuple[float, asyncpg.Record]] = []
    again: list[tuple[float, asyncpg.Record]] = []
    try:
        hour = await _insert_next_hour(conn, rng)  # warm-up: the consumer joins its group
        _, warm_row = await _event(producer, conn, kafka, _hour_event(hour))
        for i in range(events):
            hour = await _insert_next_hour(conn, rng)
            event = _hour_event(hour)
            steady.append(await _event(producer, conn, kafka, event))
            seconds, row = steady[-1]
            print(f"new hour {i + 1}: {seconds:.3f} s (run {row['id']} {row['status']})")
        for i in range(redelivered):
            again.append(await _event(producer, conn, kafka, event))
            seconds, row = again[-1]
            print(f"redelivered {i + 1}: {seconds:.3f} s (run {row['id']} {row['status']})")
    finally:
        await conn.close()
        await producer.stop()
        stop.set()
        await task

    # --- figures
    print(
        f"\nconditions: {os.cpu_count()} cores, load average {_load(began)}\n"
        f"  ({len(TICKERS)} metals, candidates "
        f"{', '.join(c.label for c in cfg.candidates)}, x_size {cfg.x_size}, "
        f"{cfg.backtest_origins} origins, horizon {cfg.backtest_horizon}, "
        f"coalesce {cfg.coalesce_s:g} s, polled every {1000 * POLL_S:g} ms)"
    )
    print("\n(b) first run after the backfill (empty forecast cache)")
    print(
        f"  TrainingRunner.run     {first_s:.2f} s, {first.status}; RunReport.timings: "
        + ", ".join(f"{k} {first.timings.get(k, 0):.3f}" for k in TIMING_KEYS)
        + f"; origins fitted {first.timings.get('origins_fitted', 0):.0f}, "
        f"reused {first.timings.get('origins_reused', 0):.0f}"
    )
    fitted = first.timings.get("origins_fitted", 0)
    backtest_s = first.timings.get("backtest_s", 0) or math.nan
    print(
        f"  origins fitted/s       {fitted / backtest_s:.0f} in the run's backtest; "
        f"{first_fitted / first_alone:.0f} alone"
    )
    print(
        f"  baseline, compute alone (backtest + scores + decision + fit, in-process, no "
        f"I/O): {first_alone:.2f} s for {first_fitted} origins; run / alone "
        f"{first_s / first_alone:.2f}"
    )
    print(f"  (warm_up before it, as the service does: {warm_s:.2f} s, not counted)")

    lat = [s for s, _ in steady]
    statuses = sorted({str(r["status"]) for _, r in steady})
    run_t = [_timings(r) for _, r in steady]
    print(f"\n(a) steady state: {events} events, each after one new hour for all metals")
    decided = sorted({int(r["decided"]) for _, r in steady})
    print(
        f"  event → run finished   {_p50_max(lat)}   (runs: {', '.join(statuses)}; metals "
        f"decided per run: {', '.join(map(str, decided))}; warm-up event not counted: "
        f"{warm_row['status']})"
    )
    print(
        "  inside the run (p50)   "
        + ", ".join(f"{k} {statistics.median(t.get(k, 0) for t in run_t):.3f}" for k in TIMING_KEYS)
        + f"; origins fitted {statistics.median(t.get('origins_fitted', 0) for t in run_t):.0f}"
        + f", reused {statistics.median(t.get('origins_reused', 0) for t in run_t):.0f}"
    )
    outside = [s - t.get("total_s", 0) for (s, _), t in zip(steady, run_t, strict=True)]
    print(
        f"  outside the run (p50)  {statistics.median(outside):.3f} s: Kafka delivery, "
        f"coalescing ({cfg.coalesce_s:g} s), polling"
    )
    alone = [s for s, _ in hour_alone]
    print(
        f"  baseline, one new hour's compute alone (in-process, no I/O, "
        f"{hour_alone[0][1]} origins fitted): {_p50_max(alone)}"
    )
    print(f"  baseline, the four ARIMA fits alone (Model.train): {_p50_max(fits)}")
    print(
        f"  ratio event path / compute alone (p50): "
        f"{statistics.median(lat) / statistics.median(alone):.2f}"
    )
    if again:
        lat_again = [s for s, _ in again]
        print(
            f"  'unchanged' (the last event redelivered, no new hour): {_p50_max(lat_again)} "
            f"over {len(again)} (runs: "
            f"{', '.join(sorted({str(r['status']) for _, r in again}))})"
        )

    steady_ok = (
        statistics.median(lat) <= AIM_STEADY_P50_S
        and max(lat) <= AIM_STEADY_MAX_S
        and statuses == ["succeeded"]
        and decided == [len(TICKERS)]
    )
    print(
        f"\naim (a): p50 ≤ {AIM_STEADY_P50_S:g} s and max ≤ {AIM_STEADY_MAX_S:g} s, every "
        f"run succeeded for all {len(TICKERS)} metals: {_met(steady_ok)}"
    )
    print(f"aim (b): first run ≤ {AIM_FIRST_S:g} s: {_met(first_s <= AIM_FIRST_S)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20, help="new-hour events measured")
    parser.add_argument("--redelivered", type=int, default=5, help="'unchanged' events")
    parser.add_argument("--hours", type=int, default=720, help="backfill before the first run")
    args = parser.parse_args()
    # One BLAS thread for the whole process, as the trainer's composition root sets it for
    # the service: the baselines, the first run and the service all fit under it.
    with single_threaded_blas():
        asyncio.run(main(args.events, args.redelivered, args.hours))

"""Many instruments: what the trainer runs per instrument, then bare fits in a loop and in a
process pool.

    uv run --all-packages python bench/bench_trainer_scale.py [--instruments 1000] [--workers 2]
        [--trainer-instruments 8]

1. **What the trainer runs** (its own code, in-process, as ``TrainingRunner`` does for each
   metal): with ``TrainerSection``'s defaults (5 candidates, 168 origins, horizon 24), for
   ``--trainer-instruments`` synthetic instruments: the first run (every origin fitted: the
   backtest, its scores, the decision, the production fit) and a steady-state run after one
   new hour (the cached origins reused, one new origin per candidate). The per-instrument
   times are then multiplied out to ``--instruments`` and labelled as such.
2. **Bare fits** of ``--instruments`` series x ``--points`` hourly points, the default family
   (ARIMA(1,1,0) with drift, sktime), each through the full per-series path (checks, fit,
   convergence check, fitted params, in-sample metrics): a plain loop, then a ``FitPool``
   (which the trainer does not use yet; "Every instrument" wires one in).

Prints figures; asserts nothing about time.

BLAS threads are capped at 1 here, before numpy is imported, so the loop and the workers
fit under the same conditions (``--threaded-blas`` leaves the parent's BLAS alone).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metalcast_models import FitResult

SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instruments", type=int, default=1000)
    parser.add_argument("--points", type=int, default=12)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--family", default="arima")
    parser.add_argument("--skip-loop", action="store_true")
    parser.add_argument("--threaded-blas", action="store_true")
    parser.add_argument("--trainer-instruments", type=int, default=8)
    args = parser.parse_args()

    if not args.threaded_blas:
        # Before anything imports numpy (importing metalcast_models does): the same caps
        # as metalcast_models.parallel.SINGLE_THREAD_ENV gives the workers.
        if "numpy" in sys.modules:
            print("warning: numpy already imported; BLAS thread caps may not apply")
        os.environ.update(SINGLE_THREAD_ENV)

    began = time.perf_counter()
    import sktime.forecasting.arima  # noqa: F401  (what the trainer process pays once)

    from metalcast_models import FitPool, GeneratedData, fit_frame

    print(f"import sktime + trainer: {time.perf_counter() - began:.1f} s")

    if args.trainer_instruments > 0:
        _trainer_path(args.trainer_instruments, args.instruments)

    tickers = [f"SYN{i:04d}" for i in range(args.instruments)]
    frame = GeneratedData(seed=0).window(tickers, args.points)
    print(
        f"{args.instruments} instruments x {args.points} hourly points, family={args.family}, "
        f"{os.cpu_count()} cores"
    )

    print(
        f"parallel capacity now: {_parallel_capacity(args.workers):.2f} of {args.workers} "
        "(a pure-Python spin in each worker, against one alone)"
    )
    began = time.perf_counter()
    fit_frame(frame, tickers[:1], args.points, args.family)  # first fit pays lazy imports
    print(f"first fit in this process: {time.perf_counter() - began:.2f} s")

    loop_s = None
    if not args.skip_loop:
        began = time.perf_counter()
        results = fit_frame(frame, tickers, args.points, args.family)
        loop_s = time.perf_counter() - began
        print(
            f"loop:  {loop_s:6.1f} s  ({1000 * loop_s / len(tickers):.1f} ms per series, "
            f"fit {_fit_ms(results):.1f} ms)  {_summary(results)}"
        )

    began = time.perf_counter()
    with FitPool(args.workers) as pool:
        warm = pool.warm_up(args.family)
        startup_s = time.perf_counter() - began
        print(
            f"pool start-up: {startup_s:.1f} s (per worker: "
            f"{', '.join(f'{w:.1f}' for w in warm)} s to import sktime and fit once)"
        )
        timings = {}
        for keep in (False, True):
            began_fit = time.perf_counter()
            pooled = pool.fit_many(
                frame, args.points, args.family, chunk_size=args.chunk_size, keep_forecasters=keep
            )
            timings[keep] = time.perf_counter() - began_fit
            what = "with the fitted forecasters sent back" if keep else "results only"
            print(
                f"pool:  {timings[keep]:6.1f} s  {what} ({args.workers} workers; "
                f"fit {_fit_ms(pooled):.1f} ms per series inside a worker)  {_summary(pooled)}"
            )
    fit_s = timings[True]
    total_s = startup_s + fit_s
    if loop_s is not None:
        print(
            f"ratio loop/pool: {loop_s / timings[False]:.2f}x warm pool (results only), "
            f"{loop_s / fit_s:.2f}x warm pool (with forecasters), "
            f"{loop_s / total_s:.2f}x including start-up ({total_s:.1f} s)"
        )


def _trainer_path(count: int, scale_to: int) -> None:
    """The trainer's per-instrument work (backtest, scores, decision, production fit), first
    run and one new hour later, on ``count`` generated instruments."""
    from datetime import UTC, datetime

    from metalcast_models import GeneratedData, get_family
    from metalcast_models.backtest import Series, decide
    from metalcast_models.fitting import fit_series
    from metalcast_trainer.config import TrainerSection
    from metalcast_trainer.evaluation import backtest_and_score

    cfg = TrainerSection()
    candidates, rules = cfg.build_candidates(), cfg.rules()
    n = cfg.x_size + cfg.backtest_origins + 2  # one more hour for the steady-state run
    end = datetime(2026, 3, 2, tzinfo=UTC)
    tickers = [f"TRN{i:03d}" for i in range(count)]
    frame = GeneratedData(seed=1, end=end).window(tickers, n)

    def one(series: Series, cache: dict[Any, Any]) -> tuple[dict[Any, Any], float]:
        began = time.perf_counter()
        bt, scores = backtest_and_score(cfg, candidates, series, cache)
        chosen = decide(candidates, scores, None, rules=rules).chosen
        values = series.values
        import pandas as pd

        observed = pd.Series(values, index=pd.DatetimeIndex(list(series.stamps)))
        fit_series(
            "X", observed, cfg.x_size, get_family(chosen.family), dict(chosen.hyperparameters)
        )
        new = {(k, f.origin): f for k, fs in bt.forecasts.items() for f in fs}
        return new, time.perf_counter() - began

    first: list[float] = []
    steady: list[float] = []
    for ticker in tickers:
        column = frame[ticker]
        stamps = [ts.to_pydatetime() for ts in column.index]
        older = Series(column.to_numpy()[:-1], stamps[:-1])
        cache, seconds = one(older, {})
        first.append(seconds)
        _, seconds = one(Series(column.to_numpy(), stamps), cache)
        steady.append(seconds)
    per_first, per_steady = sum(first) / count, sum(steady) / count
    print(
        f"trainer path, {count} instruments, {len(candidates)} candidates, "
        f"{cfg.backtest_origins} origins, horizon {cfg.backtest_horizon} (in-process, one "
        f"thread, no I/O): first run {per_first:.2f} s per instrument, one new hour "
        f"{1000 * per_steady:.0f} ms per instrument"
    )
    print(
        f"  multiplied out to {scale_to} instruments (an estimate, not measured): first run "
        f"{per_first * scale_to / 60:.1f} min, one new hour {per_steady * scale_to:.0f} s"
    )


def _spin(n: int) -> float:
    began = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return time.perf_counter() - began


def _parallel_capacity(workers: int, n: int = 3_000_000) -> float:
    """How many cores this machine gives us right now (other load shares the 2 cores)."""
    import multiprocessing

    alone = _spin(n)
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_spin, [n // 10] * workers)  # start the processes first
        began = time.perf_counter()
        pool.map(_spin, [n] * workers)
        together = time.perf_counter() - began
    return workers * alone / together


def _fit_ms(results: Mapping[str, FitResult]) -> float:
    return 1000 * sum(r.fit_seconds for r in results.values()) / max(1, len(results))


def _summary(results: Mapping[str, FitResult]) -> str:
    reasons: Counter[str] = Counter()
    ok = 0
    for result in results.values():
        if result.ok:
            ok += 1
        else:
            reasons[str(result.reason)[:70]] += 1
    text = f"ok={ok} failed={sum(reasons.values())}"
    if reasons:
        text += " " + "; ".join(f"{r} x{n}" for r, n in reasons.most_common(3))
    return text


if __name__ == "__main__":
    main()

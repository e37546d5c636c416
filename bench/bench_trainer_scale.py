"""Fitting many small series: a plain loop against the trainer's process pool.

    uv run --all-packages python bench/bench_trainer_scale.py [--instruments 1000] [--workers 2]

Synthetic instruments (the generator's integrated AR(1)), ``--points`` hourly points each,
the default family (ARIMA(1,1,0) with drift, sktime). Both sides run the trainer's full
per-series path (checks, fit, convergence check, fitted params, in-sample metrics) and keep
the fitted forecasters. Prints figures; asserts nothing about time.

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
from typing import TYPE_CHECKING

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

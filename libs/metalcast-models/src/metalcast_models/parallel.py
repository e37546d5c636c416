"""Fitting many series in a process pool.

Each task fits a chunk of series (one small ``DataFrame``), so per-task overhead is paid
once per chunk. Workers are *spawned* (not forked) with ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` at 1 in their environment from the
start, so the BLAS libraries they load are single-threaded: many tiny fits on 2 cores ran
twice as slow with threaded BLAS. The environment is set in the parent only while workers
are spawned (see :func:`_scoped_environ`); the initializer sets it again and caps the
already-loaded thread pools with threadpoolctl.

A spawned worker imports pandas and sktime (seconds): keep a :class:`FitPool` open for the
life of the trainer, and :meth:`FitPool.warm_up` it at start. Only the built-in model
families exist in workers.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    import pandas as pd

    from metalcast_models.fitting import FitResult

SINGLE_THREAD_ENV: dict[str, str] = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@contextmanager
def _scoped_environ(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in ``os.environ`` for the block (spawned children inherit it).

    Not thread-safe: create and warm the pool from one thread, at start-up.
    """
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Cap BLAS/OpenMP thread pools at one thread for the block (many tiny fits: threaded
    BLAS on 2 cores made ARIMA fits 2-4x slower, more so on a busy machine)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def _init_worker(env: Mapping[str, str]) -> None:
    os.environ.update(env)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return
    threadpool_limits(limits=1)


def _worker_report(names: Sequence[str]) -> dict[str, Any]:
    from threadpoolctl import threadpool_info

    return {
        "pid": os.getpid(),
        "environ": {name: os.environ.get(name) for name in names},
        "blas_threads": sorted({int(i["num_threads"]) for i in threadpool_info()}),
    }


def _warm_worker(family: str) -> float:
    """Import sktime and fit once, so the first real chunk does not pay for it."""
    began = time.perf_counter()
    from metalcast_models.data import GeneratedData
    from metalcast_models.fitting import fit_frame

    frame = GeneratedData(seed=0).window(["WARMUP"], 12)
    fit_frame(frame, ["WARMUP"], 12, family, keep_forecasters=False)
    return time.perf_counter() - began


def _fit_chunk(
    frame: pd.DataFrame,
    x_size: int,
    family: str,
    params: Mapping[str, Any] | None,
    keep_forecasters: bool,
) -> dict[str, FitResult]:
    from metalcast_models.fitting import fit_frame

    return fit_frame(
        frame, list(frame.columns), x_size, family, params, keep_forecasters=keep_forecasters
    )


def blas_process_pool(workers: int, warm_family: str | None = "naive") -> ProcessPoolExecutor:
    """A spawned process pool whose workers run one BLAS/OpenMP thread each (for callers that
    submit their own functions, e.g. the trainer's backtests); with ``warm_family`` every
    worker imports sktime and fits once before this returns."""
    env = dict(SINGLE_THREAD_ENV)
    executor = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(env,),
    )
    if warm_family is not None:
        with _scoped_environ(env):
            futures = [executor.submit(_warm_worker, warm_family) for _ in range(workers)]
        for future in futures:
            future.result()
    return executor


class FitPool:
    """A process pool that fits many series; use as a context manager or call ``close``."""

    def __init__(self, workers: int | None = None, *, env: Mapping[str, str] | None = None):
        self.workers = workers or os.cpu_count() or 1
        self._env = dict(SINGLE_THREAD_ENV if env is None else env)
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self._env,),
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def warm_up(self, family: str = "arima") -> list[float]:
        """Start every worker and let each import sktime and fit once; seconds per worker."""
        with _scoped_environ(self._env):
            futures = [self._executor.submit(_warm_worker, family) for _ in range(self.workers)]
        return [f.result() for f in futures]

    def probe(self) -> dict[str, Any]:
        """Ask one worker for its pid, thread-cap environment and BLAS/OpenMP thread counts."""
        return self._executor.submit(_worker_report, sorted(self._env)).result()

    def fit_many(
        self,
        frame: pd.DataFrame,
        x_size: int,
        family: str = "arima",
        params: Mapping[str, Any] | None = None,
        *,
        chunk_size: int | None = None,
        keep_forecasters: bool = True,
    ) -> dict[str, FitResult]:
        """Fit every column of ``frame`` (the :class:`TrainingData` shape) in the pool.

        ``chunk_size`` defaults to about four chunks per worker. Results come back in
        column order; a chunk whose worker died raises (``BrokenProcessPool``).
        """
        from metalcast_models.families import get_family

        get_family(family).resolve(params)  # fail fast, in the caller, on bad names
        columns: Sequence[str] = list(frame.columns)
        if not columns:
            return {}
        size = chunk_size or max(1, math.ceil(len(columns) / (4 * self.workers)))
        futures: list[Future[dict[str, FitResult]]] = []
        with _scoped_environ(self._env):  # workers may be spawned on submit
            for start in range(0, len(columns), size):
                chunk = frame[list(columns[start : start + size])]
                futures.append(
                    self._executor.submit(
                        _fit_chunk, chunk, x_size, family, params, keep_forecasters
                    )
                )
        results: dict[str, FitResult] = {}
        for future in futures:
            results.update(future.result())
        return results


def fit_many(
    frame: pd.DataFrame,
    x_size: int,
    family: str = "arima",
    params: Mapping[str, Any] | None = None,
    *,
    workers: int | None = None,
    chunk_size: int | None = None,
    keep_forecasters: bool = True,
) -> dict[str, FitResult]:
    """One-shot :meth:`FitPool.fit_many` (pays the workers' start-up every call)."""
    with FitPool(workers) as pool:
        return pool.fit_many(
            frame,
            x_size,
            family,
            params,
            chunk_size=chunk_size,
            keep_forecasters=keep_forecasters,
        )

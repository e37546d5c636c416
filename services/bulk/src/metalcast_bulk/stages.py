"""The feature stage: the published ``prices`` -> the ``features`` dataset, in its own stage
directory ``features/runs/<run_id>/part-*.parquet``, published through ``features/CURRENT``."""

from __future__ import annotations

import time
from dataclasses import dataclass

from metalcast_bulk.engines import Engine
from metalcast_bulk.features import WindowRule
from metalcast_bulk.ingest import STAGE as PRICES
from metalcast_bulk.storage import Store

FEATURES = "features"


@dataclass(frozen=True)
class FeaturesResult:
    run_id: str
    prices_run_id: str
    rows: int
    seconds: float


def build_features(
    engine: Engine, store: Store, run_id: str, rule: WindowRule, keep: int
) -> FeaturesResult:
    started = time.perf_counter()
    prices_run, files = store.current_files(PRICES, "data")
    out_dir = store.run_dir(FEATURES, run_id)
    rows = engine.features(store, files, out_dir, rule)
    store.publish(
        FEATURES,
        run_id,
        prices_run_id=prices_run,
        rows=rows,
        engine=engine.name,
        window=rule.as_json(),
    )
    store.prune(FEATURES, keep)
    return FeaturesResult(run_id, prices_run, rows, time.perf_counter() - started)

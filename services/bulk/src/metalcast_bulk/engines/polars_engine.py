"""The default engine: polars in this process, batches of files on a small thread pool
(polars releases the GIL while it parses and computes)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from metalcast_bulk.features import WindowRule
from metalcast_bulk.schema import (
    ADJ_CLOSE_ROLLING_MED,
    DATE,
    ETF,
    FEATURES_SCHEMA,
    QUARANTINE_SCHEMA,
    SYMBOL,
    VOL_MOVING_AVG,
    VOLUME,
)
from metalcast_bulk.storage import Store
from metalcast_bulk.validate import (
    Report,
    SourceFile,
    file_quarantine,
    read_raw,
    report_of,
    validate_rows,
)

# Files per batch: one batch is validated at once and written as one Parquet part; a
# symbol's rows never span two parts.
BATCH_FILES = 400


def validate_batch(
    source: Store, files: list[SourceFile], max_price: float
) -> tuple[pl.DataFrame, pl.DataFrame, Report]:
    """Read and validate some files: good rows, quarantined rows, counts."""
    frames: list[pl.DataFrame] = []
    rejected: list[pl.DataFrame] = []
    for item in files:
        try:
            data = source.read_bytes(item.path)
        except OSError:
            raw: pl.DataFrame | str = "unreadable"
        else:
            raw = read_raw(item, data)
        if isinstance(raw, str):
            rejected.append(file_quarantine(item, raw))
        else:
            frames.append(raw)
    if frames:
        good, bad = validate_rows(pl.concat(frames, how="vertical"), max_price)
    else:
        good, bad = validate_rows(_empty_raw(), max_price)
    quarantined = pl.concat([*rejected, bad]) if rejected else bad
    return good, quarantined, report_of(len(files), good.height, quarantined)


def _empty_raw() -> pl.DataFrame:
    from metalcast_bulk.schema import LINE, RAW_COLUMNS, SECURITY_NAME, SOURCE_FILE

    schema = {c: pl.String for c in (*RAW_COLUMNS, SYMBOL, SECURITY_NAME, SOURCE_FILE)}
    return pl.DataFrame(schema={**schema, ETF: pl.Boolean, LINE: pl.Int64})


def feature_frame(prices: pl.DataFrame, rule: WindowRule) -> pl.DataFrame:
    """The features of every symbol in ``prices`` (:data:`FEATURES_SCHEMA`), sorted by
    symbol and date."""
    need = rule.effective_min_periods
    frame = prices.select(SYMBOL, ETF, DATE, VOLUME, "Adj Close").sort(SYMBOL, DATE)
    volume = pl.col(VOLUME).cast(pl.Float64)
    adj = pl.col("Adj Close")
    if rule.kind == "calendar":
        frame = frame.with_columns(pl.col(DATE).str.to_date("%Y-%m-%d").alias("_d"))
        window = f"{rule.size}d"
        mean = volume.rolling_mean_by("_d", window_size=window, min_samples=need)
        median = adj.rolling_median_by("_d", window_size=window, min_samples=need)
    else:
        mean = volume.rolling_mean(window_size=rule.size, min_samples=need)
        median = adj.rolling_median(window_size=rule.size, min_samples=need)
    out = frame.with_columns(
        mean.over(SYMBOL).alias(VOL_MOVING_AVG), median.over(SYMBOL).alias(ADJ_CLOSE_ROLLING_MED)
    )
    return out.select(list(FEATURES_SCHEMA)).cast(FEATURES_SCHEMA)


class PolarsEngine:
    name = "polars"

    def __init__(self, workers: int | None = None, batch_files: int = BATCH_FILES) -> None:
        self.workers = workers or min(os.cpu_count() or 1, 4)
        self.batch_files = batch_files

    def ingest_kind(
        self,
        source: Store,
        files: list[SourceFile],
        out: Store,
        run_dir: str,
        kind: str,
        max_price: float,
    ) -> Report:
        batches = [files[i : i + self.batch_files] for i in range(0, len(files), self.batch_files)]

        def one(index: int) -> Report:
            good, bad, report = validate_batch(source, batches[index], max_price)
            if good.height:
                out.write_parquet(f"{run_dir}/data/{kind}/part-{index:05d}.parquet", good)
            if bad.height:
                out.write_parquet(
                    f"{run_dir}/quarantine/{kind}/part-{index:05d}.parquet",
                    bad.cast(QUARANTINE_SCHEMA),
                )
            return report

        total = Report()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="bulk-ingest") as pool:
            for report in pool.map(one, range(len(batches))):
                total.add(report)
        return total

    def features(self, store: Store, prices: list[str], out_dir: str, rule: WindowRule) -> int:
        def one(index: int) -> int:
            frame = store.read_parquet(
                [prices[index]], columns=[SYMBOL, ETF, DATE, VOLUME, "Adj Close"]
            )
            result = feature_frame(frame, rule)
            store.write_parquet(f"{out_dir}/part-{index:05d}.parquet", result)
            return result.height

        with ThreadPoolExecutor(self.workers, thread_name_prefix="bulk-features") as pool:
            return sum(pool.map(one, range(len(prices))))

"""The Spark engine (pyspark): the same stages on a Spark master, ``local[2]`` or a standalone
cluster (``spark://HOST:PORT``).

Ingest: the file list becomes a DataFrame spread over the executors; each partition reads
its files and runs the very validation the polars engine runs
(:func:`metalcast_bulk.validate.validate_rows`, through ``mapInArrow``), so both engines
accept and reject exactly the same rows. Good rows are written by Spark, one symbol per file
(hash-partitioned by symbol, sorted by symbol and date); the quarantine (small) is collected
and written like the polars engine's.

Features: Spark SQL window functions, an implementation of its own: ``avg`` and the exact
``percentile(Adj Close, 0.5)`` (not ``percentile_approx``) over a frame of
``rangeBetween(-(size-1), 0)`` days (calendar) or ``rowsBetween(-(size-1), 0)`` (rows),
nulled where the frame holds fewer than ``min_periods`` rows.

Spark reads the input through our store (disk or S3) but writes Parquet with its own
writers: the data store must be a folder every executor sees (local disk with ``local[N]``,
a shared filesystem on a cluster). S3 output through ``s3a://`` would need the hadoop-aws
jars, which are not set up.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from metalcast_bulk.features import WindowRule
from metalcast_bulk.schema import (
    ADJ_CLOSE_ROLLING_MED,
    DATE,
    ETF,
    FEATURES_SCHEMA,
    LINE,
    PRICES_SCHEMA,
    QUARANTINE_SCHEMA,
    RAW_COLUMNS,
    REASON,
    SOURCE_FILE,
    SYMBOL,
    VOL_MOVING_AVG,
    VOLUME,
)
from metalcast_bulk.storage import Store
from metalcast_bulk.validate import Report, SourceFile, report_of

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_ROW_KIND = "_good"

# pyspark 4.3 warns about pandas 3 on every Arrow conversion; this engine converts through
# pyarrow only.
warnings.filterwarnings(
    "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
)
# py4j logs its connection closing at interpreter exit, after logging's handlers may be gone.
logging.getLogger("py4j").setLevel(logging.WARNING)


def _combined_schema() -> pa.Schema:
    """One Arrow schema for both outputs of a partition: the good rows' typed columns, the
    quarantine's own columns and the raw text of a quarantined row (``_raw_<column>``)."""
    typed = pl.DataFrame(schema=PRICES_SCHEMA).to_arrow().schema
    extra = [
        pa.field(SOURCE_FILE, pa.large_string()),
        pa.field(LINE, pa.int64()),
        pa.field(REASON, pa.large_string()),
        *[pa.field(f"_raw_{c}", pa.large_string()) for c in RAW_COLUMNS],
    ]
    return pa.schema([pa.field(_ROW_KIND, pa.bool_()), *typed, *extra])


def _partition(store: Store, max_price: float) -> Any:
    """The function each executor runs on its batches of file descriptions."""
    schema = _combined_schema()

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from metalcast_bulk.engines.polars_engine import validate_batch

        for batch in batches:
            files = [
                SourceFile(r["path"], r["name"], r["symbol"], r["etf"], r["security_name"])
                for r in batch.to_pylist()
            ]
            if not files:
                continue
            good, bad, _ = validate_batch(store, files, max_price)
            good_part = good.with_columns(pl.lit(True).alias(_ROW_KIND))
            bad_part = bad.rename({c: f"_raw_{c}" for c in RAW_COLUMNS}).with_columns(
                pl.lit(False).alias(_ROW_KIND)
            )
            both = pl.concat([good_part, bad_part], how="diagonal_relaxed")
            yield from both.select(schema.names).to_arrow().cast(schema).to_batches()

    return run


class SparkEngine:
    name = "spark"

    def __init__(self, master: str = "local[2]", partitions: int = 8) -> None:
        self.master = master
        self.partitions = partitions
        self._spark: SparkSession | None = None

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            from pyspark.sql import SparkSession

            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            builder: Any = SparkSession.builder
            self._spark = (
                builder.master(self.master)
                .appName("metalcast-bulk")
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.driver.host", "127.0.0.1")
                .config("spark.driver.bindAddress", "127.0.0.1")
                .config("spark.sql.shuffle.partitions", str(self.partitions))
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.driver.memory", "2g")
                .config("spark.pyspark.python", sys.executable)
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                .config("spark.sql.parquet.compression.codec", "zstd")
                .getOrCreate()
            )
        return self._spark

    def stop(self) -> None:
        if self._spark is not None:
            self._spark.stop()
            self._spark = None

    def _local(self, store: Store, rel: str) -> str:
        if not store.is_local:
            raise ValueError(
                f"the Spark engine writes to a folder every executor sees; {store.url} is not "
                "one (S3 through s3a is not set up): use the polars engine or a local data_url"
            )
        return store.path(rel)

    def ingest_kind(
        self,
        source: Store,
        files: list[SourceFile],
        out: Store,
        run_dir: str,
        kind: str,
        max_price: float,
    ) -> Report:
        from pyspark.sql import functions as F

        target = self._local(out, f"{run_dir}/data/{kind}")
        if not files:
            return Report()
        listing = [(f.path, f.name, f.symbol, f.etf, f.security_name) for f in files]
        described = self.spark.createDataFrame(
            listing, "path string, name string, symbol string, etf boolean, security_name string"
        ).repartition(max(min(len(files) // 50, 64), 2))
        schema = _combined_schema()
        from pyspark.sql.pandas.types import from_arrow_schema

        rows = described.mapInArrow(_partition(source, max_price), from_arrow_schema(schema))
        rows = rows.cache()
        try:
            good = rows.filter(F.col(_ROW_KIND)).select(*PRICES_SCHEMA.names())
            (
                good.repartition(self.partitions, SYMBOL)
                .sortWithinPartitions(SYMBOL, DATE)
                .write.mode("overwrite")
                .parquet(target)
            )
            good_rows = good.count()
            bad_cols = [
                F.col(f"_raw_{c}").alias(c) if c in RAW_COLUMNS else F.col(c)
                for c in QUARANTINE_SCHEMA.names()
            ]
            bad_arrow = rows.filter(~F.col(_ROW_KIND)).select(*bad_cols).toArrow()
        finally:
            rows.unpersist()
        frame = pl.from_arrow(bad_arrow)
        assert isinstance(frame, pl.DataFrame)
        bad = frame.cast(QUARANTINE_SCHEMA).sort(SOURCE_FILE, LINE, nulls_last=False)
        if bad.height:
            out.write_parquet(f"{run_dir}/quarantine/{kind}/part-00000.parquet", bad)
        return report_of(len(files), good_rows, bad)

    def features(self, store: Store, prices: list[str], out_dir: str, rule: WindowRule) -> int:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        target = self._local(store, out_dir)
        frame: DataFrame = self.spark.read.parquet(*[self._local(store, p) for p in prices])
        frame = frame.select(SYMBOL, ETF, DATE, VOLUME, "Adj Close")
        lo = -(rule.size - 1)
        if rule.kind == "calendar":
            day = F.datediff(F.to_date(F.col(DATE)), F.lit("1970-01-01").cast("date"))
            frame = frame.withColumn("_day", day)
            window = Window.partitionBy(SYMBOL).orderBy("_day").rangeBetween(lo, 0)
        else:
            window = Window.partitionBy(SYMBOL).orderBy(DATE).rowsBetween(lo, 0)
        enough = F.count(F.lit(1)).over(window) >= rule.effective_min_periods
        mean = F.avg(F.col(VOLUME).cast("double")).over(window)
        median = F.percentile(F.col("Adj Close"), F.lit(0.5)).over(window)
        result = frame.select(
            SYMBOL,
            ETF,
            DATE,
            VOLUME,
            "Adj Close",
            F.when(enough, mean).alias(VOL_MOVING_AVG),
            F.when(enough, median).alias(ADJ_CLOSE_ROLLING_MED),
        ).select(*FEATURES_SCHEMA.names())
        result = result.repartition(self.partitions, SYMBOL).sortWithinPartitions(SYMBOL, DATE)
        result.write.mode("overwrite").parquet(target)
        written = self.spark.read.parquet(target).count()
        return int(written)


__all__ = ["REASON", "SparkEngine"]

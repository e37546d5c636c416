"""The engines that run the ingest and feature stages: polars (default, embedded) and Spark.

Both implement :class:`Engine`: the same inputs give the same datasets (checked by
``tests/integration/test_bulk_spark.py``, every feature value compared).
"""

from __future__ import annotations

from typing import Protocol

from metalcast_bulk.features import WindowRule
from metalcast_bulk.storage import Store
from metalcast_bulk.validate import Report, SourceFile


class Engine(Protocol):
    name: str

    def ingest_kind(
        self,
        source: Store,
        files: list[SourceFile],
        out: Store,
        run_dir: str,
        kind: str,
        max_price: float,
    ) -> Report:
        """Validate every file of one kind; write ``<run_dir>/data/<kind>/*.parquet`` (good
        rows) and ``<run_dir>/quarantine/<kind>/*.parquet``; return the counts."""
        ...

    def features(self, store: Store, prices: list[str], out_dir: str, rule: WindowRule) -> int:
        """Compute the features of every symbol in ``prices`` (Parquet files of the prices
        dataset) into ``<out_dir>/*.parquet``; return the number of rows written."""
        ...


def make_engine(
    name: str, spark_master: str = "local[2]", workers: int = 0, batch_files: int = 400
) -> Engine:
    if name == "polars":
        from metalcast_bulk.engines.polars_engine import PolarsEngine

        return PolarsEngine(workers or None, batch_files)
    if name == "spark":
        from metalcast_bulk.engines.spark_engine import SparkEngine

        return SparkEngine(spark_master)
    raise ValueError(f"unknown engine {name!r}: polars or spark")


__all__ = ["Engine", "make_engine"]

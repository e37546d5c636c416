"""Polars and Spark (``local[2]``: two cores) on the same input give the same datasets: the
same good rows, the same quarantine and report, and every feature value of both window rules
(the exact median, not ``percentile_approx``). Input: real daily prices plus corrupt files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from metalcast_bulk.engines.polars_engine import PolarsEngine
from metalcast_bulk.engines.spark_engine import SparkEngine
from metalcast_bulk.features import WindowRule
from metalcast_bulk.ingest import STAGE, ingest
from metalcast_bulk.schema import FEATURES_SCHEMA, PRICES_SCHEMA, QUARANTINE_SCHEMA
from metalcast_bulk.stages import FEATURES, build_features
from metalcast_bulk.storage import Store, new_run_id
from tests.bulk_support import HEADER, real_market_dir

pytestmark = pytest.mark.integration

CORRUPT = {
    "stocks/HTML.csv": b"<!doctype html><html><title>503</title></html>",
    "etfs/EMPTY.csv": b"",
    "stocks/HDR.csv": b"Date,Close\n2020-01-02,1\n",
    "stocks/BADROWS.csv": (
        f"{HEADER}\n2020-01-02,10,11,9,10,10,1000\n2020-01-03,10,11,9,10,-2.38e21,1000\n"
        "2020-01-06,10,11,9,10,1.9e19,1000\n2020-01-07,10,9,11,10,10,1000\n"
        "2020-01-08,10,11,9,10,10,-5\nnot-a-date,10,11,9,10,10,1\n"
        "2020-01-09,0,11,9,10,10,1\n2020-01-02,10,11,9,10,10,999\n2020-01-10,10,11,9,10,10,1\n"
    ).encode(),
}


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkEngine]:
    engine = SparkEngine("local[2]")
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="module")
def both(
    tmp_path_factory: pytest.TempPathFactory, spark: SparkEngine
) -> tuple[Store, Store, str, str, Path]:
    root = tmp_path_factory.mktemp("parity")
    real_market_dir(root / "in")
    for name, body in CORRUPT.items():
        (root / "in" / name).write_bytes(body)
    source = Store.open(str(root / "in"))
    by_polars, by_spark = Store.open(str(root / "polars")), Store.open(str(root / "spark"))
    a = ingest(PolarsEngine(), source, "", by_polars, new_run_id(), 1e7, keep=3)
    b = ingest(spark, source, "", by_spark, new_run_id(), 1e7, keep=3)
    return by_polars, by_spark, a.run_id, b.run_id, root


def _prices(store: Store) -> pl.DataFrame:
    return store.read_parquet(store.current_files(STAGE, "data")[1]).sort("Symbol", "Date")


def test_both_engines_accept_and_reject_the_same_rows(
    both: tuple[Store, Store, str, str, Path],
) -> None:
    by_polars, by_spark, run_a, run_b, _ = both
    a, b = _prices(by_polars), _prices(by_spark)
    assert a.schema == b.schema == PRICES_SCHEMA
    assert a.height > 22_000
    assert_frame_equal(a, b)

    def quarantine(store: Store, run_id: str) -> pl.DataFrame:
        files = store.list_files(f"{store.run_dir(STAGE, run_id)}/quarantine", ".parquet")
        return store.read_parquet(files).sort("file", "line", nulls_last=False)

    qa, qb = quarantine(by_polars, run_a), quarantine(by_spark, run_b)
    assert qa.schema == qb.schema == QUARANTINE_SCHEMA
    assert_frame_equal(qa, qb)
    assert sorted(set(qa["reason"])) == [
        "absurd_price",
        "duplicate_date",
        "empty_file",
        "high_below_low",
        "html",
        "negative_volume",
        "non_positive_price",
        "unparseable_date",
        "wrong_header",
    ]
    ra = by_polars.read_json(f"{by_polars.run_dir(STAGE, run_a)}/report.json")
    rb = by_spark.read_json(f"{by_spark.run_dir(STAGE, run_b)}/report.json")
    assert {**ra, "run_id": None} == {**rb, "run_id": None}


@pytest.mark.parametrize("rule", [WindowRule(), WindowRule("rows")], ids=lambda r: r.kind)
def test_both_engines_compute_the_same_features(
    both: tuple[Store, Store, str, str, Path], spark: SparkEngine, rule: WindowRule
) -> None:
    by_polars, by_spark, _, _, _ = both
    build_features(PolarsEngine(), by_polars, new_run_id(), rule, keep=5)
    build_features(spark, by_spark, new_run_id(), rule, keep=5)
    a = by_polars.read_parquet(by_polars.current_files(FEATURES)[1]).sort("Symbol", "Date")
    b = by_spark.read_parquet(by_spark.current_files(FEATURES)[1]).sort("Symbol", "Date")
    assert a.schema == b.schema == FEATURES_SCHEMA
    keys = ["Symbol", "ETF", "Date", "Volume", "Adj Close"]
    assert_frame_equal(a.select(keys), b.select(keys))
    # every value: the same nulls (minimum periods) and the same numbers; the mean may
    # differ in the last bits (each engine sums in its own order), the median may not.
    for column, rtol in (("vol_moving_avg", 1e-12), ("adj_close_rolling_med", 0.0)):
        x, y = a[column].to_numpy(), b[column].to_numpy()
        assert np.array_equal(np.isnan(x), np.isnan(y)), column
        np.testing.assert_allclose(x, y, rtol=rtol, atol=0, err_msg=column)
    if rule.kind == "rows":
        assert a["vol_moving_avg"].null_count() > 0


def test_the_local_stacks_spark_cluster_runs_the_same_stages(
    both: tuple[Store, Store, str, str, Path], spark: SparkEngine, tmp_path: Path
) -> None:
    """``metalcast stack up --with-spark``: a standalone master and worker; the engine on
    ``spark://`` ingests and computes the same features as polars."""
    from metalcast.stack import StackConfig
    from metalcast.stack import spark as spark_stack
    from metalcast_bulk.engines.polars_engine import feature_frame

    by_polars, _, _, _, root = both
    config = StackConfig.from_environ()
    reports = spark_stack.start(config)
    spark.stop()  # one SparkSession per process: the local[2] one makes way
    engine = SparkEngine(spark_stack.master_url(config))
    try:
        assert engine.spark.sparkContext.master == spark_stack.master_url(config)
        state = spark_stack.master_state(config)
        assert state is not None
        assert state["status"] == "ALIVE"
        assert sum(w["cores"] for w in state["workers"] if w["state"] == "ALIVE") >= 2
        store = Store.open(str(tmp_path / "cluster"))
        ingest(engine, Store.open(str(root / "in")), "", store, new_run_id(), 1e7, keep=3)
        assert_frame_equal(_prices(store), _prices(by_polars))
        build_features(engine, store, new_run_id(), WindowRule(), keep=3)
        got = store.read_parquet(store.current_files(FEATURES)[1]).sort("Symbol", "Date")
    finally:
        engine.stop()
        if reports["spark-master"].started:
            spark_stack.stop(config)
    want = feature_frame(_prices(by_polars), WindowRule())
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-12, abs_tol=0)

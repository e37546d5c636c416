"""The features on real daily prices (bokeh's stocks, arch's S&P 500 and NASDAQ), checked
against an independent pandas computation for both window rules; the time split and the
trained model. On disk, polars engine, no servers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metalcast_bulk.engines.polars_engine import PolarsEngine
from metalcast_bulk.features import WindowRule
from metalcast_bulk.ingest import ingest
from metalcast_bulk.schema import FEATURES_SCHEMA
from metalcast_bulk.stages import FEATURES, build_features
from metalcast_bulk.storage import Store, new_run_id
from metalcast_bulk.train import TrainConfig, fit, time_split
from metalcast_models.volume import VolumeModel
from tests.bulk_support import real_market_dir


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, dict[str, int], Path]:
    root = tmp_path_factory.mktemp("bulk")
    rows = real_market_dir(root / "in")
    out = Store.open(str(root / "out"))
    result = ingest(PolarsEngine(), Store.open(str(root / "in")), "", out, new_run_id(), 1e7, 3)
    assert result.report.rows_good == sum(rows.values())  # every real row lands
    assert result.report.rows_quarantined == 0
    return out, rows, root


def _pandas_features(source: Path, rule: WindowRule) -> pd.DataFrame:
    """Straight from the CSVs, with pandas' own rolling windows."""
    frames = []
    for path in sorted(source.glob("*/*.csv")):
        frame = pd.read_csv(path)
        frame["Date"] = pd.to_datetime(frame["Date"], format="mixed")
        frame = frame.sort_values("Date").set_index("Date")
        window: str | int = f"{rule.size}D" if rule.kind == "calendar" else rule.size
        roll_v = (
            frame["Volume"].astype(float).rolling(window, min_periods=rule.effective_min_periods)
        )
        roll_a = frame["Adj Close"].rolling(window, min_periods=rule.effective_min_periods)
        frames.append(
            pd.DataFrame(
                {
                    "Symbol": path.stem,
                    "Date": pd.DatetimeIndex(frame.index).strftime("%Y-%m-%d"),
                    "vol_moving_avg": roll_v.mean().to_numpy(),
                    "adj_close_rolling_med": roll_a.median().to_numpy(),
                }
            )
        )
    return pd.concat(frames).sort_values(["Symbol", "Date"]).reset_index(drop=True)


@pytest.mark.parametrize(
    "rule",
    [WindowRule(), WindowRule("rows"), WindowRule("calendar", 30, 10), WindowRule("rows", 30, 5)],
    ids=lambda r: r.describe(),
)
def test_features_match_an_independent_pandas_computation(
    ingested: tuple[Store, dict[str, int], Path], rule: WindowRule
) -> None:
    store, rows, root = ingested
    result = build_features(PolarsEngine(), store, new_run_id(), rule, keep=10)
    assert result.rows == sum(rows.values())
    ours = store.read_parquet(store.current_files(FEATURES)[1])
    assert ours.schema == FEATURES_SCHEMA
    ours = ours.sort("Symbol", "Date")
    expected = _pandas_features(root / "in", rule)
    assert ours["Symbol"].to_list() == expected["Symbol"].tolist()
    assert ours["Date"].to_list() == expected["Date"].tolist()
    for column in ("vol_moving_avg", "adj_close_rolling_med"):
        got = ours[column].to_numpy().astype(float)  # nulls -> NaN
        want = expected[column].to_numpy()
        assert np.array_equal(np.isnan(got), np.isnan(want)), column
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, err_msg=column)
    nulls = int(ours["vol_moving_avg"].null_count())
    if rule.kind == "rows":  # each symbol's first min_periods - 1 rows
        assert nulls == (rule.effective_min_periods - 1) * len(rows)
    elif rule.effective_min_periods == 1:
        assert nulls == 0


def test_the_split_is_by_time_and_the_model_answers_integers(
    ingested: tuple[Store, dict[str, int], Path], tmp_path: Path
) -> None:
    store, _, _ = ingested
    build_features(PolarsEngine(), store, new_run_id(), WindowRule(), keep=10)
    features = store.read_parquet(store.current_files(FEATURES)[1]).drop_nulls()

    past, recent, first_test = time_split(features, 0.2)
    assert past["Date"].max() < first_test <= recent["Date"].min()  # type: ignore[operator]
    assert past.height + recent.height == features.height
    assert 0.15 < recent.height / features.height < 0.25

    cfg = TrainConfig(num_boost_round=50, max_train_rows=10_000)
    result = fit(store, new_run_id(), tmp_path / "work", cfg)
    assert result.train_end < result.test_start
    assert result.n_train == min(past.height, 10_000)
    assert result.n_test == recent.height
    m = result.metrics
    for key in ("mae", "mse", "baseline_mae", "baseline_mse", "mae_ratio", "mse_ratio"):
        assert np.isfinite(m[key]), key
        assert m[key] > 0, key
    # the metrics are what the test period says: recompute them from the saved model
    model = VolumeModel.load(result.model_path)
    x = recent.select("vol_moving_avg", "adj_close_rolling_med").to_numpy()
    predicted = np.maximum(np.rint(model.predict_many(x)), 0)
    y = recent["Volume"].to_numpy().astype(float)
    assert m["mae"] == pytest.approx(float(np.mean(np.abs(predicted - y))))
    naive = recent["vol_moving_avg"].to_numpy()
    assert m["baseline_mae"] == pytest.approx(float(np.mean(np.abs(naive - y))))
    value = model.predict(12345.0, 25.0)
    assert isinstance(value, int)
    assert value >= 0
    stored = store.read_json(f"train/runs/{result.run_id}/metrics.json")
    assert stored["metrics"]["mae"] == pytest.approx(m["mae"])
    assert stored["split"]["test"][0] == result.test_start.isoformat()
    assert (tmp_path / "work" / "metrics.json").is_file()


def test_window_rule_defaults_are_pandas_own() -> None:
    assert WindowRule().effective_min_periods == 1
    assert WindowRule("rows").effective_min_periods == 30
    with pytest.raises(ValueError, match="min_periods"):
        WindowRule("rows", 30, 31)

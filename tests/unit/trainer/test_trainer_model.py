"""The data scientists' API, bad data, and the default data source."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from metalcast_models import (
    FAMILIES,
    Family,
    FrameTrainingData,
    GeneratedData,
    Model,
    PostgresTrainingData,
    sha256_of,
)
from metalcast_models.data import rows_to_frame

TICKERS = ["XAUUSD", "XAGUSD", "XPTUSD", "XPDUSD"]
END = datetime(2025, 3, 3, 12, tzinfo=UTC)


def test_snippet_with_generated_data_trains_and_saves_one_file_per_ticker(tmp_path: Path) -> None:
    model = Model(["XAUUSD", "XAGUSD", "XPTUSD", "XPDUSD"], x_size=12, y_size=1)
    results = model.train(use_generated_data=True)

    assert list(results) == TICKERS
    assert model.failed == {}
    assert all(r.ok and r.n_obs == 12 for r in results.values())

    saved = model.save(tmp_path / "model1")

    files = sorted(p.name for p in (tmp_path / "model1").iterdir())
    assert files == sorted(f"{t}.zip" for t in TICKERS)
    for artifact in saved:
        assert artifact.path == tmp_path / "model1" / f"{artifact.ticker}.zip"
        assert artifact.size_bytes == artifact.path.stat().st_size > 0
        assert artifact.sha256 == sha256_of(artifact.path)


def test_saved_files_reload_with_sktime_and_predict(tmp_path: Path) -> None:
    from sktime.base import load

    model = Model(TICKERS, x_size=12, y_size=1, data_source=GeneratedData(seed=1, end=END))
    model.train()
    model.save(tmp_path)
    for ticker in TICKERS:
        reloaded = load(str(tmp_path / ticker))  # sktime adds ".zip" to a str path
        point = float(reloaded.predict(fh=[1]).iloc[0])
        original = float(model.forecasters[ticker].predict(fh=[1]).iloc[0])
        assert np.isfinite(point)
        assert point == pytest.approx(original)


def test_bad_series_fail_with_reasons_while_the_good_one_trains(
    good_frame: pd.DataFrame, hours: pd.DatetimeIndex
) -> None:
    frame = good_frame.copy()
    frame["XAGUSD"] = 31.25  # constant
    frame.loc[frame.index[:-5], "XPTUSD"] = np.nan  # only 5 values

    model = Model(TICKERS, x_size=12, y_size=1, data_source=FrameTrainingData(frame))
    results = model.train()

    assert results["XAUUSD"].ok
    assert results["XAUUSD"].window_end == END
    assert set(model.failed) == {"XAGUSD", "XPTUSD"}
    assert model.failed["XAGUSD"].startswith("constant series")
    assert model.failed["XPTUSD"] == "too few rows: 5 observed hourly values, need 12"
    assert all(r.forecaster is None for r in results.values() if not r.ok)


def test_closed_hours_are_skipped_and_the_span_recorded(good_frame: pd.DataFrame) -> None:
    """A weekend: 60 hours without prices inside the window. The window is the last 12
    observed values, nothing imputed; it spans 72 hours."""
    hours = pd.date_range(end=END, periods=72, freq="h", tz="UTC")
    values = GeneratedData(seed=3, end=END, history=60).window(["XAUUSD"], 12)["XAUUSD"]
    frame = pd.DataFrame({"XAUUSD": values.to_numpy()}, index=hours)
    closed = hours[6:66]
    frame.loc[closed, "XAUUSD"] = np.nan
    result = Model(["XAUUSD"], 12, 1, data_source=FrameTrainingData(frame)).train()["XAUUSD"]
    assert result.ok, result.reason
    assert result.window_start == hours[0].to_pydatetime()
    assert result.window_end == END
    assert result.window_hours == 72
    assert result.n_obs == 12
    expected = frame["XAUUSD"].dropna().to_numpy()
    assert np.allclose(result.forecaster._y.to_numpy(), expected)


def test_a_daily_only_source_trains_on_its_last_twelve_days(good_frame: pd.DataFrame) -> None:
    days = pd.date_range(end=END, periods=20, freq="D", tz="UTC")
    values = GeneratedData(seed=4, end=END).window(["XAGUSD"], 20)["XAGUSD"].to_numpy()
    frame = pd.DataFrame({"XAGUSD": values}, index=days)
    result = Model(["XAGUSD"], 12, 1, data_source=FrameTrainingData(frame)).train()["XAGUSD"]
    assert result.ok, result.reason
    assert result.window_start == days[-12].to_pydatetime()
    assert result.window_hours == 11 * 24 + 1


def test_a_late_start_is_too_few_rows(good_frame: pd.DataFrame) -> None:
    frame = good_frame.iloc[-12:].copy()
    frame.loc[frame.index[0], "XPTUSD"] = np.nan
    model = Model(TICKERS, 12, 1, data_source=FrameTrainingData(frame))
    model.train()
    assert model.failed == {"XPTUSD": "too few rows: 11 observed hourly values, need 12"}


def test_unknown_ticker_and_non_positive_price_fail(good_frame: pd.DataFrame) -> None:
    frame = good_frame.copy()
    frame.loc[frame.index[-2], "XAGUSD"] = -1.0
    model = Model([*TICKERS, "BTCUSD"], 12, 1, data_source=FrameTrainingData(frame))
    model.train()
    assert model.failed["BTCUSD"] == "no training data for BTCUSD"
    assert model.failed["XAGUSD"].startswith("non-positive price -1")
    assert set(model.forecasters) == {"XAUUSD", "XPTUSD", "XPDUSD"}


def test_non_convergence_is_a_failure_not_an_exception(good_frame: pd.DataFrame) -> None:
    model = Model(TICKERS, 12, 1, params={"maxiter": 1}, data_source=FrameTrainingData(good_frame))
    results = model.train()
    assert all(not r.ok for r in results.values())
    assert all("did not converge" in (r.reason or "") for r in results.values())


class _Exploding:
    def fit(self, y: Any) -> None:
        raise np.linalg.LinAlgError("Schur decomposition solver error")


def test_a_fit_that_raises_marks_the_ticker_failed(
    good_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    family = Family("exploding", {}, build=lambda hp: _Exploding(), extract_params=dict)
    monkeypatch.setitem(FAMILIES, "exploding", family)
    results = Model(
        TICKERS, 12, 1, family="exploding", data_source=FrameTrainingData(good_frame)
    ).train()
    assert {r.reason for r in results.values()} == {
        "fit failed: LinAlgError: Schur decomposition solver error"
    }


def test_results_are_json_records(good_frame: pd.DataFrame) -> None:
    frame = good_frame.copy()
    frame["XAGUSD"] = 1.0
    results = Model(TICKERS, 12, 1, data_source=FrameTrainingData(frame)).train()
    records = [r.to_record() for r in results.values()]
    decoded = json.loads(json.dumps(records, allow_nan=False))
    assert decoded[0]["hyperparameters"]["order"] == [1, 1, 0]
    assert decoded[0]["window_end"] == END.isoformat()
    assert decoded[1]["ok"] is False


def test_in_sample_metrics_compare_with_the_naive_baseline(good_frame: pd.DataFrame) -> None:
    source = FrameTrainingData(good_frame)
    arima = Model(TICKERS, 12, 1, data_source=source).train()["XAUUSD"].metrics
    naive = Model(TICKERS, 12, 1, family="naive", data_source=source).train()["XAUUSD"].metrics
    assert arima["n"] == naive["n"] == 11
    for key in ("mae", "rmse", "mape", "naive_mae", "naive_rmse", "naive_mape", "beats_naive"):
        assert key in arima
    assert arima["naive_rmse"] == pytest.approx(naive["naive_rmse"])
    assert naive["rmse"] == pytest.approx(naive["naive_rmse"])  # naive is its own baseline
    assert naive["beats_naive"] is False
    assert arima["beats_naive"] == (arima["rmse"] < arima["naive_rmse"])  # type: ignore[operator]


def test_bad_configuration_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown model family"):
        Model(TICKERS, 12, 1, family="prophet")
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        Model(TICKERS, 12, 1, params={"ordr": (2, 1, 0)})
    with pytest.raises(ValueError, match="x_size"):
        Model(TICKERS, 2, 1)


def test_default_source_is_postgres_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METALCAST_POSTGRES__URL", "postgresql://trainer@db.invalid:5432/x")
    model = Model(TICKERS, 12, 1)
    assert model.data_source is None  # nothing is read or built at construction
    source = model._source()
    assert isinstance(source, PostgresTrainingData)
    assert source._dsn == "postgresql://trainer@db.invalid:5432/x"


def test_rows_to_frame_maps_metal_columns() -> None:
    rows = [
        {"ts": datetime(2025, 1, 1, 0), "xau": 2650.0, "xag": 31.0, "xpt": None, "xpd": 1000.0},
        {"ts": datetime(2025, 1, 1, 1), "xau": 2651.0, "xag": 31.1, "xpt": 961.0, "xpd": 999.0},
    ]
    frame = rows_to_frame(rows, {"XAUUSD": "xau", "XPTUSD": "xpt"})
    assert list(frame.columns) == ["XAUUSD", "XPTUSD"]
    assert str(pd.DatetimeIndex(frame.index).tz) == "UTC"
    assert frame["XAUUSD"].tolist() == [2650.0, 2651.0]
    assert np.isnan(frame["XPTUSD"].iloc[0])


def test_generator_levels_and_ar1_increments() -> None:
    frame = GeneratedData(seed=11, end=END).window(TICKERS, 20_000)
    first = frame.iloc[0]
    assert first["XAUUSD"] == pytest.approx(2650.0)
    assert first["XAGUSD"] == pytest.approx(31.0)
    assert first["XPTUSD"] == pytest.approx(960.0)
    assert first["XPDUSD"] == pytest.approx(1000.0)
    returns = np.diff(np.log(frame["XAUUSD"].to_numpy()))
    phi = np.corrcoef(returns[:-1], returns[1:])[0, 1]
    assert phi == pytest.approx(0.3, abs=0.05)
    assert frame.index[-1] == END
    assert pd.DatetimeIndex(frame.index).freqstr == "h"
    again = GeneratedData(seed=11, end=END).window(TICKERS, 20_000)
    pd.testing.assert_frame_equal(frame, again)

"""Families' fitted parameters, forecasts with intervals, artifacts."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metalcast_models import (
    FAMILIES,
    FitPool,
    FrameTrainingData,
    GeneratedData,
    Model,
    check_artifact,
    load_forecaster,
    predict_with_intervals,
)

TICKERS = ["XAUUSD", "XAGUSD", "XPTUSD", "XPDUSD"]
END = datetime(2025, 3, 3, 12, tzinfo=UTC)

EXPECTED_KEYS = {
    "arima": {"ar.L1", "intercept", "sigma2", "aic", "bic"},
    "naive": {"last"},
    "theta": {"smoothing_level", "initial_level", "drift"},
    "drift": {"last", "slope"},
    "ses": {"smoothing_level", "initial_level"},
}


@pytest.fixture(scope="module")
def trained() -> dict[str, Model]:
    source = GeneratedData(seed=5, end=END)
    models = {}
    for family in FAMILIES:
        model = Model(TICKERS, x_size=12, y_size=3, family=family, data_source=source)
        model.train()
        models[family] = model
    return models


def test_registry_has_the_five_families() -> None:
    assert set(FAMILIES) == set(EXPECTED_KEYS)


@pytest.mark.parametrize("family", sorted(EXPECTED_KEYS))
def test_params_are_json_numbers_with_the_expected_keys(
    trained: dict[str, Model], family: str
) -> None:
    model = trained[family]
    assert model.failed == {}
    for result in model.results.values():
        assert EXPECTED_KEYS[family] <= set(result.params)
        json.dumps(result.params, allow_nan=False)
        assert all(v is None or type(v) is float for v in result.params.values())
        json.dumps(result.to_record(), allow_nan=False)


def test_naive_last_is_the_last_observation(trained: dict[str, Model]) -> None:
    frame = GeneratedData(seed=5, end=END).window(TICKERS, 12)
    result = trained["naive"].results["XAGUSD"]
    assert result.params["last"] == pytest.approx(frame["XAGUSD"].iloc[-1])


@pytest.mark.parametrize("family", sorted(EXPECTED_KEYS))
def test_intervals_are_ordered_and_indexed_by_utc_hour(
    trained: dict[str, Model], family: str
) -> None:
    for ticker, forecaster in trained[family].forecasters.items():
        out = predict_with_intervals(forecaster, horizon=3, coverage=(0.8, 0.95))
        assert list(out.columns) == ["point", "lower_80", "upper_80", "lower_95", "upper_95"], (
            ticker
        )
        assert list(out.index) == list(
            pd.date_range(END + pd.Timedelta(hours=1), periods=3, freq="h", tz="UTC")
        )
        values = out[["lower_95", "lower_80", "point", "upper_80", "upper_95"]].to_numpy()
        assert np.isfinite(values).all()
        assert (np.diff(values, axis=1) >= 0).all(), (family, ticker, out)
        assert (out["upper_95"] > out["lower_95"]).all()


def test_model_forecast_uses_y_size(trained: dict[str, Model]) -> None:
    forecasts = trained["arima"].forecast()
    assert set(forecasts) == set(TICKERS)
    assert all(len(f) == 3 for f in forecasts.values())


def test_check_artifact_accepts_a_good_file_and_refuses_corrupt_ones(
    trained: dict[str, Model], tmp_path: Path
) -> None:
    saved = {a.ticker: a for a in trained["arima"].save(tmp_path)}
    good = saved["XAUUSD"]
    assert check_artifact(good.path) is None
    assert check_artifact(good.path, expected_sha256=good.sha256) is None
    assert check_artifact(tmp_path / "XAUUSD") is None  # suffix optional
    assert load_forecaster(good.path).predict(fh=[1]).shape == (1,)

    truncated = saved["XAGUSD"].path
    truncated.write_bytes(truncated.read_bytes()[:200])
    assert (check_artifact(truncated) or "").startswith("cannot load")

    garbage = saved["XPTUSD"].path
    garbage.write_bytes(b"not a zip at all")
    assert (check_artifact(garbage) or "").startswith("cannot load")

    tampered = saved["XPDUSD"]
    reason = check_artifact(tampered.path, expected_sha256="0" * 64)
    assert (reason or "").startswith("sha256 mismatch")

    assert (check_artifact(tmp_path / "missing.zip") or "").startswith("cannot load")


def test_save_replaces_existing_files(trained: dict[str, Model], tmp_path: Path) -> None:
    first = trained["naive"].save(tmp_path)
    second = trained["naive"].save(tmp_path)
    assert [a.sha256 for a in first] == [a.sha256 for a in second]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{t}.zip" for t in TICKERS)


def test_pool_fits_the_same_as_a_loop() -> None:
    tickers = [f"SYN{i:03d}" for i in range(12)]
    frame = GeneratedData(seed=2, end=END).window(tickers, 12)
    frame.iloc[-3, 0] = np.nan  # a gap: the worker reports it like the loop does
    local = Model(tickers, 12, 1, data_source=FrameTrainingData(frame)).train()
    with FitPool(workers=2) as pool:
        pooled = pool.fit_many(frame, 12, chunk_size=5)
        report = pool.probe()
    assert report["pid"] != os.getpid()
    assert set(report["environ"].values()) == {"1"}
    assert report["blas_threads"] == [1]
    assert list(pooled) == tickers
    assert pooled[tickers[0]].reason == local[tickers[0]].reason is not None
    for ticker in tickers[1:]:
        assert pooled[ticker].ok
        assert pooled[ticker].params == pytest.approx(local[ticker].params)
        assert pooled[ticker].forecaster is not None


def test_arima_fast_paths_agree_with_sktime(trained: dict[str, Model]) -> None:
    family = FAMILIES["arima"]
    for forecaster in trained["arima"].forecasters.values():
        generic = np.asarray(forecaster.predict_residuals(), dtype=float)
        fast = family.in_sample_residuals(forecaster)
        np.testing.assert_allclose(fast, generic, equal_nan=True)
        assert family.forecast_one(forecaster) == pytest.approx(
            float(forecaster.predict(fh=[1]).iloc[0])
        )


def test_naive_fast_paths_agree_with_sktime(trained: dict[str, Model]) -> None:
    family = FAMILIES["naive"]
    for forecaster in trained["naive"].forecasters.values():
        generic = np.asarray(forecaster.predict_residuals(), dtype=float)
        fast = family.in_sample_residuals(forecaster)
        assert np.isnan(fast[0])  # the first value has no previous one to predict it
        np.testing.assert_allclose(fast[1:], generic[1:])
        point = float(forecaster.predict(fh=[1]).iloc[0])
        assert family.forecast_one(forecaster) == pytest.approx(point)
        assert family.extract_params(forecaster) == {"last": pytest.approx(point)}


def test_drift_fast_paths_are_the_drift_methods_fitted_values(
    trained: dict[str, Model],
) -> None:
    family = FAMILIES["drift"]
    for forecaster in trained["drift"].forecasters.values():
        y = pd.Series(np.asarray(forecaster._y, dtype=float))
        slope = (y.iloc[-1] - y.iloc[0]) / (len(y) - 1)
        # fpp3's drift method: each fitted value is the previous value plus the slope, the
        # residuals sktime's own interval variance is computed from.
        expected = (y - (y.shift(1) + slope)).to_numpy()
        np.testing.assert_allclose(family.in_sample_residuals(forecaster), expected, equal_nan=True)
        assert family.forecast_one(forecaster) == pytest.approx(
            float(forecaster.predict(fh=[1]).iloc[0])
        )
        assert family.extract_params(forecaster) == {
            "last": pytest.approx(y.iloc[-1]),
            "slope": pytest.approx(slope),
        }


def test_arima_with_concentrated_scale_still_reports_sigma2() -> None:
    source = GeneratedData(seed=5, end=END)
    model = Model(TICKERS, 12, 1, params={"concentrate_scale": True}, data_source=source)
    model.train()
    default = Model(TICKERS, 12, 1, data_source=source)
    default.train()
    for ticker, result in model.results.items():
        if not result.ok:
            continue
        assert EXPECTED_KEYS["arima"] <= set(result.params)
        assert result.params["sigma2"] == pytest.approx(
            default.results[ticker].params["sigma2"], rel=1e-2
        )

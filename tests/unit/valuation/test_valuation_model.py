"""The LightGBM valuation candidate: expanding-window CV (validation always after training,
nothing shuffled), the grid search's record, the EMA-30 fallback, a walk-forward backtest
that sees nothing after its origin, and the same champion/challenger decision as every other
candidate, against naive and ARIMA on the same origins."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from metalcast_models.backtest import decide
from metalcast_models.valuation import (
    ValuationConfig,
    evaluate,
    expanding_splits,
    fit_valuation,
    gbm_backtest,
    gold_series,
    grid_search,
    point_in_time_features,
)
from metalcast_models.valuation.model import grid_points
from tests.valuation_data import LAGS, LEVELS, gold_closes, vintages

SMALL = ValuationConfig(
    x_size=30,
    origins=60,
    refit_every=20,
    folds=3,
    min_train=200,
    grid={"num_leaves": [7, 15], "learning_rate": [0.1], "n_estimators": [40]},
)


@pytest.fixture(scope="module")
def data() -> tuple[pd.Series, pd.DataFrame]:
    return gold_closes(), vintages()


@pytest.mark.parametrize(("n", "folds", "min_train"), [(100, 4, 20), (1303, 4, 250), (37, 3, 10)])
def test_every_validation_row_comes_after_every_training_row(
    n: int, folds: int, min_train: int
) -> None:
    splits = expanding_splits(n, folds, min_train)
    assert len(splits) == folds
    seen_validation: list[int] = []
    for k, (train, valid) in enumerate(splits):
        assert train.max() < valid.min()  # validation strictly after training
        assert list(train) == list(range(len(train)))  # expanding from the first row, in order
        assert list(valid) == list(range(valid[0], valid[-1] + 1))  # one contiguous block
        if k:
            assert len(train) > len(splits[k - 1][0])
        seen_validation += list(valid)
    assert seen_validation == list(range(min_train, n))  # every later row validated once
    with pytest.raises(ValueError, match="too few rows"):
        expanding_splits(5, 4, 4)


def test_the_grid_search_records_every_combination_and_picks_the_lowest_cv_mae() -> None:
    rng = np.random.default_rng(3)
    x = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    y = pd.Series(0.5 * x["a"] + 0.1 * rng.normal(size=300))
    grid: dict[str, list[Any]] = {
        "num_leaves": [3, 7],
        "learning_rate": [0.05, 0.2],
        "n_estimators": [30],
    }
    search = grid_search(x, y, grid, folds=3, min_train=120)
    assert [r["params"] for r in search.results] == grid_points(grid)
    assert all(len(r["fold_mae"]) == 3 for r in search.results)
    best = min(search.results, key=lambda r: r["mean_mae"])
    assert search.best_params == best["params"]
    assert search.best_mae == best["mean_mae"]
    assert search.folds[0] == {"train_end": 120, "validation_start": 120, "validation_end": 180}
    # a learnable signal: the model beats predicting no change on every fold
    assert all(m < n for m, n in zip(best["fold_mae"], search.naive_fold_mae, strict=True))
    assert search.as_json()["grid"] == grid


def test_out_of_range_inputs_fall_back_to_the_ema_and_say_why(
    data: tuple[pd.Series, pd.DataFrame],
) -> None:
    closes, v = data
    days = list(closes.index)
    pit = point_in_time_features(v, LAGS, closes, days, levels=LEVELS)
    fit = fit_valuation(
        pit.frame, pit.features, folds=3, min_train=200, params={"n_estimators": 30}
    )
    rows = pit.frame.iloc[[-3, -2]].copy()
    low, high = fit.ranges["VIXCLS"]
    assert low is not None
    assert high is not None
    rows.loc[rows.index[1], "VIXCLS"] = high * 2
    priced = fit.predict_prices(rows)
    assert not priced["fallback"].iloc[0]
    assert priced["price"].iloc[0] == priced["model_price"].iloc[0]
    assert priced["fallback"].iloc[1]
    assert priced["price"].iloc[1] == rows["ema30"].iloc[1]
    assert "VIXCLS=" in priced["fallback_reason"].iloc[1]
    assert f"{high:.6g}" in priced["fallback_reason"].iloc[1]
    assert sum(fit.importances.values()) == pytest.approx(1.0)


def test_the_walk_forward_backtest_sees_nothing_after_its_origin(
    data: tuple[pd.Series, pd.DataFrame],
) -> None:
    closes, v = data
    days = list(closes.index)
    pit = point_in_time_features(v, LAGS, closes, days, levels=LEVELS)
    series = gold_series(closes)
    indices = series.origins(SMALL.x_size, 5)
    params = {"num_leaves": 7, "n_estimators": 40}
    cfg = dataclasses.replace(SMALL, refit_every=1)
    honest, records = gbm_backtest(pit.frame, pit.features, series, indices, cfg, params)
    origin = indices[0]
    poisoned = pit.frame.copy()
    after = poisoned.index > days[origin + 1]
    poisoned.loc[after, "target"] = 10.0  # every later target is absurd
    poisoned.loc[after, list(pit.features)] = 1e6  # and so is every later feature row
    # the target row itself: its features are knowable, its target is not
    poisoned.loc[days[origin + 1], "target"] = -10.0
    first, _ = gbm_backtest(poisoned, pit.features, series, [origin], cfg, params)
    assert first[0].points[0] == honest[0].points[0]
    assert records["fallback"].dtype == bool
    assert list(records["date"]) == [days[i + 1] for i in indices]


def test_lightgbm_competes_with_naive_and_arima_under_the_same_rules(
    data: tuple[pd.Series, pd.DataFrame],
) -> None:
    closes, v = data
    result = evaluate(closes, v, LAGS, SMALL, levels=LEVELS)
    names = [c.name for c in result.candidates]
    assert names == ["naive", "arima", "lightgbm"]
    scored = [result.scores[c.key] for c in result.candidates]
    assert {(s.origins, s.first_origin, s.last_origin) for s in scored} == {
        (SMALL.origins, scored[0].first_origin, scored[0].last_origin)
    }
    # the decision is exactly decide()'s on these scores: promoted only if it wins
    again = decide(result.candidates, result.scores, None)
    assert result.decision == again
    assert result.decision.chosen.name in names
    # every backtest forecast says whether the EMA-30 stood in, and why
    bt = result.backtest
    assert len(bt) == SMALL.origins
    assert (bt.loc[bt["fallback"], "price"] == bt.loc[bt["fallback"], "ema30"]).all()
    assert bt.loc[bt["fallback"], "fallback_reason"].notna().all()
    assert bt.loc[~bt["fallback"], "fallback_reason"].isna().all()
    # the final fit's grid search and importances are there to record
    assert result.fit.search is not None
    assert len(result.fit.search.results) == 2
    assert set(result.fit.importances) == set(result.fit.features)
    assert result.forecast["date"] > closes.index[-1]
    assert math.isfinite(result.forecast["price"])
    summary = result.summary()
    assert summary["lightgbm"]["fallbacks"] == int(bt["fallback"].sum())
    assert summary["naive"]["mae_ratio"] == pytest.approx(1.0)


def test_backtest_rows_store_a_missing_fallback_reason_as_null(
    data: tuple[pd.Series, pd.DataFrame],
) -> None:
    from metalcast_trainer.valuation import backtest_rows

    closes, v = data
    cfg = dataclasses.replace(SMALL, origins=250)
    result = evaluate(closes, v, LAGS, cfg, levels=LEVELS)
    bt = result.backtest
    assert bt["fallback"].any()
    assert not bt["fallback"].all()  # mixed: pandas turns the missing reasons into NaN
    rows = backtest_rows(bt)
    assert len(rows) == 250
    for (*_, fallback, reason), (_, record) in zip(rows, bt.iterrows(), strict=True):
        assert fallback == record["fallback"]
        assert (reason is None) == (not fallback)
        assert reason is None or isinstance(reason, str)

"""Rolling-origin backtests, conformal calibration and the champion/challenger decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from metalcast_models.backtest import (
    Candidate,
    Rules,
    Score,
    Series,
    calibrated_bounds,
    conformal_quantile,
    coverage_error,
    decide,
    diebold_mariano,
    forecast_at,
    make_candidate,
    run_backtest,
    score,
    window_hash,
)

START = datetime(2026, 1, 5, tzinfo=UTC)


def random_walk(n: int, seed: int, sigma: float = 0.003, drift: float = 0.0) -> Series:
    rng = np.random.default_rng(seed)
    values = 100.0 * np.exp(np.cumsum(rng.normal(drift, sigma, n)))
    return Series(values, [START + timedelta(hours=i) for i in range(n)])


def test_origins_are_the_last_ones_with_a_full_window_and_a_known_next_value() -> None:
    series = random_walk(30, 0)
    assert series.origins(12, 5) == [24, 25, 26, 27, 28]
    assert series.origins(12, 100) == list(range(11, 29))
    assert random_walk(12, 0).origins(12, 5) == []


@pytest.mark.parametrize("family", ["naive", "drift"])
def test_closed_forms_equal_fitting_each_window_with_sktime(family: str) -> None:
    series = random_walk(40, 1)
    cand = make_candidate(family, 12)
    fast = run_backtest([cand], series, origins=20, horizon=5).forecasts[cand.key]
    for f in fast:
        i = list(series.stamps).index(f.origin)
        slow = forecast_at(cand, series.values[i - 11 : i + 1], f.origin, 5)
        assert slow.failed is None
        np.testing.assert_allclose(f.points, slow.points, rtol=1e-12)


def test_the_backtest_fits_exactly_as_production_fits() -> None:
    """An origin's forecast is the production fit of that window: same family, same
    hyperparameters, same x_size entries."""
    from metalcast_models import FAMILIES
    from metalcast_models._quiet import quiet_sktime
    from metalcast_models.fitting import as_entries

    series = random_walk(30, 2)
    cand = make_candidate("arima", 12)
    [f] = run_backtest([cand], series, origins=1, horizon=3).forecasts[cand.key]
    i = list(series.stamps).index(f.origin)
    forecaster = FAMILIES["arima"].create()
    with quiet_sktime():
        forecaster.fit(as_entries(series.values[i - 11 : i + 1], f.origin, "y"))
        expected = forecaster.predict(fh=[1, 2, 3]).to_numpy()
    np.testing.assert_allclose(f.points, expected, rtol=1e-9)
    assert f.se is not None
    assert np.all(np.diff(f.se) > 0)


def test_cached_forecasts_are_reused_only_while_their_window_is_unchanged() -> None:
    series = random_walk(40, 3)
    cand = make_candidate("theta", 12)
    first = run_backtest([cand], series, origins=10, horizon=2)
    cache = {(cand.key, f.origin): f for f in first.forecasts[cand.key]}
    again = run_backtest([cand], series, origins=10, horizon=2, cache=cache)
    assert (again.fitted, again.reused) == (0, 10)

    revised = series.values.copy()
    revised[30] *= 1.01  # a late tick revises one hour: the 12 windows that hold it refit
    changed = Series(revised, series.stamps)
    third = run_backtest([cand], changed, origins=10, horizon=2, cache=cache)
    holding = [i for i in changed.origins(12, 10) if i - 11 <= 30 <= i]
    assert third.fitted == len(holding)
    assert third.reused == 10 - len(holding)


def test_one_new_hour_fits_one_new_origin_per_candidate() -> None:
    series = random_walk(41, 4)
    older = Series(series.values[:-1], series.stamps[:-1])
    cands = [make_candidate(f, 12) for f in ("arima", "naive", "theta")]
    first = run_backtest(cands, older, origins=20, horizon=2)
    cache = {(k, f.origin): f for k, fs in first.forecasts.items() for f in fs}
    second = run_backtest(cands, series, origins=20, horizon=2, cache=cache)
    assert second.fitted == len(cands)


def test_conformal_quantile_is_the_finite_sample_corrected_order_statistic() -> None:
    scores = np.arange(1.0, 20.0)  # 19 scores
    assert conformal_quantile(scores, 0.95) == 19.0  # ceil(20 * 0.95) = 19th
    assert conformal_quantile(scores, 0.8) == 16.0  # ceil(20 * 0.8) = 16th
    assert conformal_quantile(scores[:10], 0.95) == np.inf  # ceil(11 * 0.95) = 11 > 10


def test_calibrated_intervals_cover_random_walks_within_three_points() -> None:
    """Pooled over four random walks, 4 x 600 origins: the 80% and 95% calibrated intervals
    are within 3 points of nominal; the raw ARIMA intervals on the same data are reported."""
    hits: dict[str, list[tuple[float, int]]] = {"80": [], "95": []}
    for seed in range(4):
        series = random_walk(12 + 600 + 2, seed + 10, sigma=0.002 * (1 + seed))
        cand = make_candidate("drift", 12)
        run = run_backtest([cand], series, origins=600, horizon=1)
        s = score(cand, series, run.forecasts[cand.key], horizon=1, calibration_window=168)
        for label in hits:
            n = s.steps[0][f"scored_{label}"]
            assert isinstance(n, int)
            assert n > 500
            coverage = s.steps[0][f"coverage_{label}"]
            assert coverage is not None
            hits[label].append((float(coverage), n))
    for label, nominal in (("80", 0.80), ("95", 0.95)):
        pooled = sum(c * n for c, n in hits[label]) / sum(n for _, n in hits[label])
        assert abs(pooled - nominal) <= 0.03, (label, pooled)


def test_raw_arima_intervals_are_reported_beside_the_calibrated_ones() -> None:
    series = random_walk(12 + 80 + 1, 21)
    cand = make_candidate("arima", 12)
    run = run_backtest([cand], series, origins=80, horizon=2)
    s = score(cand, series, run.forecasts[cand.key], horizon=2)
    step = s.steps[0]
    assert step["raw_coverage_95"] is not None
    assert 0.0 <= float(step["raw_coverage_95"]) <= 1.0
    assert step["coverage_95"] is not None
    assert s.calibration["method"].startswith("sequential split-conformal")
    assert len(s.calibration["q95"]) == 2
    assert s.calibration["q95"][0] > s.calibration["q80"][0] > 0


def test_naive_scores_a_mae_ratio_of_one_and_mase_is_scale_free() -> None:
    series = random_walk(60, 5)
    cand = make_candidate("naive", 12)
    s = score(
        cand,
        series,
        run_backtest([cand], series, origins=40, horizon=3).forecasts[cand.key],
        horizon=3,
    )
    assert [r["mae_ratio"] for r in s.steps] == pytest.approx([1.0, 1.0, 1.0])
    scaled = Series(series.values * 1000, series.stamps)
    s2 = score(
        cand,
        scaled,
        run_backtest([cand], scaled, origins=40, horizon=3).forecasts[cand.key],
        horizon=3,
    )
    assert s2.summary["mase"] == pytest.approx(s.summary["mase"])


def test_calibrated_bounds_widen_past_the_calibrated_steps() -> None:
    points = np.array([10.0, 10.0, 10.0, 10.0])
    bounds = calibrated_bounds(points, {"q80": [1.0, 2.0], "q95": [2.0, 3.0]}, scale=0.5)
    lower, upper = bounds["95"]
    np.testing.assert_allclose(upper - points, [1.0, 1.5, 1.5 * np.sqrt(1.5), 1.5 * np.sqrt(2)])
    np.testing.assert_allclose(points - lower, upper - points)


def test_window_hash_depends_on_values_and_order() -> None:
    a = np.array([1.0, 2.0, 3.0])
    assert window_hash(a) == window_hash(a.copy())
    assert window_hash(a) != window_hash(a[::-1].copy())


# --- decisions, on made-up scores --------------------------------------------------------


def cand(name: str, family: str | None = None) -> Candidate:
    return make_candidate(family or name, 12, name=name)


def fake(
    c: Candidate, mase: float, cov80: float = 0.80, cov95: float = 0.95, n: int = 1000
) -> Score:
    summary: dict[str, float | int | None] = {
        "mase": mase,
        "coverage_80": cov80,
        "coverage_95": cov95,
        "scored_80": n,
        "scored_95": n,
    }
    summary["coverage_excess"] = coverage_error(summary, beyond_noise=True)
    return Score(c.describe(), 168, None, None, 0, [], summary, {})


ARIMA, NAIVE, THETA = cand("arima"), cand("naive"), cand("theta")


def test_first_model_is_the_best_that_beats_naive_by_the_margin() -> None:
    scores = {ARIMA.key: fake(ARIMA, 0.95), NAIVE.key: fake(NAIVE, 1.0)}
    d = decide([ARIMA, NAIVE], scores, None)
    assert (d.action, d.chosen, d.move_pointer) == ("first", ARIMA, True)
    close = {ARIMA.key: fake(ARIMA, 0.995), NAIVE.key: fake(NAIVE, 1.0)}
    d = decide([ARIMA, NAIVE], close, None)
    assert d.chosen == NAIVE
    assert "does not beat naive" in d.reason


def test_a_challenger_that_loses_is_not_promoted_and_the_reason_says_why() -> None:
    scores = {
        ARIMA.key: fake(ARIMA, 0.989),
        THETA.key: fake(THETA, 0.985),
        NAIVE.key: fake(NAIVE, 1.2),
    }
    d = decide([ARIMA, THETA, NAIVE], scores, champion=ARIMA)
    assert d.action == "keep"
    assert d.chosen == ARIMA  # the champion's configuration is refitted on the new window
    assert d.best == THETA
    assert d.reason.startswith("kept arima: challenger theta MASE 0.985 vs champion 0.989")


def test_a_challenger_that_wins_by_the_margin_is_promoted() -> None:
    scores = {
        ARIMA.key: fake(ARIMA, 1.0),
        THETA.key: fake(THETA, 0.98),
        NAIVE.key: fake(NAIVE, 1.1),
    }
    d = decide([ARIMA, THETA, NAIVE], scores, champion=ARIMA)
    assert (d.action, d.chosen, d.move_pointer) == ("promote", THETA, True)
    assert "beats champion arima" in d.reason


def test_a_challenger_with_worse_coverage_is_not_promoted() -> None:
    scores = {
        ARIMA.key: fake(ARIMA, 1.0),
        THETA.key: fake(THETA, 0.9, cov95=0.90),
        NAIVE.key: fake(NAIVE, 1.1),
    }
    d = decide([ARIMA, THETA, NAIVE], scores, ARIMA, rules=Rules(coverage_tolerance=0.03))
    assert d.action == "keep"


def test_coverage_within_sampling_noise_does_not_block_a_challenger() -> None:
    """95% coverage of 0.90 on 30 scored origins is within sampling noise (SE ~4 points)."""
    scores = {
        ARIMA.key: fake(ARIMA, 1.0, n=30),
        THETA.key: fake(THETA, 0.9, cov95=0.90, n=30),
        NAIVE.key: fake(NAIVE, 1.1, n=30),
    }
    assert scores[THETA.key].summary["coverage_excess"] == 0.0
    d = decide([ARIMA, THETA, NAIVE], scores, ARIMA, rules=Rules(coverage_tolerance=0.0))
    assert d.action == "promote"


def test_the_champion_best_again_is_refitted() -> None:
    scores = {ARIMA.key: fake(ARIMA, 0.9), NAIVE.key: fake(NAIVE, 1.0)}
    d = decide([ARIMA, NAIVE], scores, champion=ARIMA)
    assert (d.action, d.chosen, d.move_pointer) == ("refit", ARIMA, True)


def test_a_pinned_pointer_is_never_moved() -> None:
    scores = {ARIMA.key: fake(ARIMA, 0.5), NAIVE.key: fake(NAIVE, 1.0)}
    d = decide([ARIMA, NAIVE], scores, champion=NAIVE, pinned="alice at v3")
    assert d.action == "pinned"
    assert d.move_pointer is False
    assert d.chosen == ARIMA
    assert d.reason.startswith("pinned by alice at v3")


def test_a_noisy_edge_is_not_significant_and_a_real_one_is() -> None:
    """Paired per-origin losses: a 2% MASE edge that is noise fails the Diebold-Mariano test;
    a consistent one passes. Bonferroni makes the bar higher with more challengers."""
    rng = np.random.default_rng(8)
    origins = [START + timedelta(hours=i) for i in range(168)]
    base = rng.exponential(1.0, 168)
    noisy = base * 0.98 + rng.normal(0, 0.5, 168)
    steady = base * 0.95
    stat, n = diebold_mariano(
        dict(zip(origins, noisy, strict=True)), dict(zip(origins, base, strict=True))
    )
    assert n == 168
    assert -1.645 < stat < 0
    stat, _ = diebold_mariano(
        dict(zip(origins, steady, strict=True)), dict(zip(origins, base, strict=True))
    )
    assert stat < -5

    def scored(c: Candidate, losses: np.ndarray) -> Score:
        s = fake(c, float(np.mean(losses)))
        return Score(
            s.candidate,
            168,
            None,
            None,
            0,
            [],
            s.summary,
            {},
            dict(zip(origins, losses, strict=True)),
        )

    scores = {
        NAIVE.key: scored(NAIVE, base),
        THETA.key: scored(THETA, noisy),
        ARIMA.key: scored(ARIMA, steady),
    }
    assert (
        decide([NAIVE, THETA], {k: scores[k] for k in (NAIVE.key, THETA.key)}, NAIVE).action
        == "keep"
    )
    d = decide([NAIVE, ARIMA], {k: scores[k] for k in (NAIVE.key, ARIMA.key)}, NAIVE)
    assert d.action == "promote"
    without_test = Rules(significance=0.0)
    assert (
        decide(
            [NAIVE, THETA],
            {k: scores[k] for k in (NAIVE.key, THETA.key)},
            NAIVE,
            rules=without_test,
        ).action
        == "promote"
    )

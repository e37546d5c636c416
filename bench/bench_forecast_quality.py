"""Forecast quality of the trainer's production choice on real price histories.

    uv run python bench/bench_forecast_quality.py [--origins 500] [--jobs 2]

What it measures, per series (Close prices that PyPI packages ship: hourly EURUSD and daily
GOOG from backtesting.py's test data, daily S&P 500 and NASDAQ from ``arch.data``):

* the **production** model's one-step MAE over the naive (last value) MAE, on the last
  ``--origins`` origins of the series (origin t: the window ends at entry t, the outcome is
  entry t + 1). Production is simulated as the trainer runs it: at each origin t, every
  candidate is scored on the ``backtest_origins`` (168) origins before t against outcomes
  known at t, and :func:`metalcast_models.backtest.decide` picks the configuration, with the
  champion carried over from origin t - 1 (none at the first origin, as on a first run). Its
  forecast at t is that configuration's fit on the window ending at t;
* the data scientists' ARIMA alone over naive, on the same origins;
* the **calibrated** 80%/95% coverage of the production interval: ``calibrated_bounds`` with
  the chosen candidate's calibration from that same backtest (so only outcomes known at t)
  and the window's scale, as the trainer records it; beside it the ARIMA's own (raw)
  interval coverage; then the coverage pooled over all series.

Everything goes through the trainer's code: the candidates, x_size, horizon, origins,
calibration and promotion rules are ``TrainerSection()``'s defaults, built into candidates
and ``Rules`` by ``TrainerSection.build_candidates()`` and ``.rules()`` as the trainer
builds them; forecasts come from
``run_backtest`` and scores from ``score``. Each candidate is fitted once per origin (one
``run_backtest`` over ``--origins`` + 168 origins, each origin's fit depends only on its own
window); the 168-origin selection window then slides over those forecasts. Selection scores
use ``score(..., horizon=1)``: the trainer decides on step 1 only (``y_size`` = 1), and
step 1's figures do not depend on the horizon; the bench checks that against
``horizon=24`` at a few origins per series and says so.

Where the chosen configuration's fit fails at an origin, the backtest's naive fallback
stands for its forecast (the trainer would keep serving the previous version); such origins
are counted. Nothing is tuned to these series. The naive forecast is the baseline, measured
on the same origins in the same run. BLAS threads are capped at 1 (the fits are tiny).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
if "numpy" not in sys.modules:  # before numpy is imported, here and in spawned workers
    os.environ.update(SINGLE_THREAD_ENV)

if TYPE_CHECKING:
    import pandas as pd

AIM_RATIO = 1.00
AIM_COVERAGE_POINTS = 3.0
CHECKED_ORIGINS = 3  # per series: selection scores with the full horizon vs with step 1 only


# --- data: Close prices shipped by packages --------------------------------------------


def _eurusd() -> pd.Series:
    from backtesting.test import EURUSD  # type: ignore[import-untyped]  # AGPL: test-time only

    close: pd.Series = EURUSD["Close"]
    return close


def _goog() -> pd.Series:
    from backtesting.test import GOOG

    close: pd.Series = GOOG["Close"]
    return close


def _sp500() -> pd.Series:
    from arch.data import sp500

    close: pd.Series = sp500.load()["Close"]
    return close


def _nasdaq() -> pd.Series:
    from arch.data import nasdaq

    close: pd.Series = nasdaq.load()["Close"]
    return close


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str
    frequency: str
    load: Callable[[], pd.Series]


DATASETS = (
    Dataset("EURUSD", "backtesting.test", "hourly", _eurusd),
    Dataset("GOOG", "backtesting.test", "daily", _goog),
    Dataset("S&P 500", "arch.data.sp500", "daily", _sp500),
    Dataset("NASDAQ", "arch.data.nasdaq", "daily", _nasdaq),
)


# --- one series ------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    source: str
    frequency: str
    observations: int
    origins: int
    first_origin: str
    last_origin: str
    production_mae: float
    naive_mae: float
    arima_mae: float
    arima_ratio_score: float | None  # ``score``'s mae_ratio for the ARIMA: a cross-check
    hits: dict[str, int]
    raw_arima: dict[str, float | None]
    arima_failed: int
    chosen_failed: int
    chosen: Counter[str]
    actions: Counter[str]
    switches: int
    fitted: int
    fit_s: dict[str, float]
    select_s: float
    checked: int
    mismatches: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.production_mae / self.naive_mae

    @property
    def arima_ratio(self) -> float:
        return self.arima_mae / self.naive_mae


def evaluate(dataset: Dataset, requested: int) -> Result:
    """The simulation described in the module docstring, for one series."""
    import numpy as np
    import pandas as pd

    from metalcast_models.backtest import (
        Score,
        Series,
        calibrated_bounds,
        decide,
        run_backtest,
        score,
    )
    from metalcast_models.families import FloatArray
    from metalcast_trainer.config import TrainerSection

    cfg = TrainerSection()
    # The trainer's own candidates and rules (TrainingRunner builds them the same way).
    candidates = cfg.build_candidates()
    rules = cfg.rules()
    select_steps = cfg.select_steps
    window = cfg.backtest_origins
    arima = next(c for c in candidates if c.family == "arima")
    naive = next(c for c in candidates if c.family == "naive")

    close = dataset.load().dropna().astype(float)
    index = pd.DatetimeIndex(close.index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    values: FloatArray = np.asarray(close.to_numpy(), dtype=np.float64)
    stamps = [ts.to_pydatetime() for ts in index]
    series = Series(values, stamps)
    n = len(values)
    # Origins with a known next value run up to n - 2; each evaluated origin needs `window`
    # origins before it, each of those a full window of x_size values.
    available = n - 1 - window - (cfg.x_size - 1)
    count = min(requested, available)
    if count < 1:
        raise ValueError(f"{dataset.name}: {n} values are too few")

    # 1. every candidate's forecast at every origin, once (per candidate to time each family)
    forecasts: dict[str, list[Any]] = {}
    fit_s: dict[str, float] = {}
    fitted = 0
    for cand in candidates:
        run = run_backtest(
            [cand], series, origins=count + window, horizon=cfg.backtest_horizon, cache=None
        )
        forecasts[cand.key] = run.forecasts[cand.key]
        fit_s[cand.name] = run.seconds
        fitted += run.fitted
    first = series.origins(cfg.x_size, count + window)[0]
    assert first == n - 1 - count - window, (first, n, count)

    # 2. slide the selection window: production at each evaluated origin
    champion = None
    hits = {"80": 0, "95": 0}
    prod_err: list[float] = []
    chosen: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    switches = chosen_failed = checked = 0
    mismatches: list[str] = []
    check_at = {round(x) for x in np.linspace(0, count - 1, CHECKED_ORIGINS)}
    began = time.perf_counter()
    for j in range(count):
        k = window + j  # position of origin t in the forecast lists
        t = first + k  # entry index of origin t
        known = Series(values[t - window : t + 1], stamps[t - window : t + 1])  # up to t only

        def scores_for(steps: int, known: Series = known, k: int = k) -> dict[str, Score]:
            return {
                c.key: score(
                    c,
                    known,
                    forecasts[c.key][k - window : k],
                    horizon=steps,
                    select_steps=select_steps,
                    min_calibration=cfg.min_calibration,
                    calibration_window=window,
                )
                for c in candidates
            }

        scores = scores_for(select_steps)
        decision = decide(candidates, scores, champion, rules=rules)
        if j in check_at:
            checked += 1
            full = scores_for(cfg.backtest_horizon)
            again = decide(candidates, full, champion, rules=rules)
            for c in candidates:
                a, b = scores[c.key], full[c.key]
                same = a.summary == b.summary and all(
                    a.calibration[q][0] == b.calibration[q][0] for q in ("q80", "q95")
                )
                if not same:
                    mismatches.append(f"{c.name} at {stamps[t].isoformat()}")
            if again.chosen.key != decision.chosen.key:
                mismatches.append(f"decision at {stamps[t].isoformat()}")
        if champion is not None and decision.chosen.key != champion.key:
            switches += 1
        champion = decision.chosen
        chosen[champion.name] += 1
        actions[decision.action] += 1

        forecast = forecasts[champion.key][k]
        chosen_failed += forecast.failed is not None
        actual = values[t + 1]
        point = forecast.points[:1]
        prod_err.append(abs(actual - float(point[0])))
        bounds = calibrated_bounds(point, scores[champion.key].calibration, forecast.scale)
        for label, (lo, hi) in bounds.items():
            hits[label] += int(float(lo[0]) <= actual <= float(hi[0]))
    select_s = time.perf_counter() - began

    # 3. the baseline and the ARIMA alone on the same origins (the trainer's ``score`` too)
    evaluated = slice(window, window + count)
    outcomes = values[first + window + 1 : first + window + count + 1]
    last = values[first + window : first + window + count]
    arima_points = np.array([f.points[0] for f in forecasts[arima.key][evaluated]])
    arima_score = score(
        arima,
        series,
        forecasts[arima.key][evaluated],
        horizon=1,
        min_calibration=cfg.min_calibration,
        calibration_window=window,
    )
    naive_points = np.array([f.points[0] for f in forecasts[naive.key][evaluated]])
    assert np.array_equal(naive_points, last)
    step = arima_score.steps[0]
    ratio = step.get("mae_ratio")
    return Result(
        name=dataset.name,
        source=dataset.source,
        frequency=dataset.frequency,
        observations=n,
        origins=count,
        first_origin=stamps[first + window].date().isoformat(),
        last_origin=stamps[first + window + count - 1].date().isoformat(),
        production_mae=float(np.mean(prod_err)),
        naive_mae=float(np.mean(np.abs(outcomes - last))),
        arima_mae=float(np.mean(np.abs(outcomes - arima_points))),
        arima_ratio_score=None if ratio is None else float(ratio),
        hits=hits,
        raw_arima={
            label: None if (v := step.get(f"raw_coverage_{label}")) is None else float(v)
            for label in ("80", "95")
        },
        arima_failed=sum(1 for f in forecasts[arima.key][evaluated] if f.failed),
        chosen_failed=chosen_failed,
        chosen=chosen,
        actions=actions,
        switches=switches,
        fitted=fitted,
        fit_s=fit_s,
        select_s=select_s,
        checked=checked,
        mismatches=mismatches,
    )


# --- report ------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "   -" if value is None else f"{100 * value:5.1f}"


def report(results: Sequence[Result], wall_s: float, jobs: int) -> bool:
    from metalcast_trainer.config import TrainerSection

    cfg = TrainerSection()
    names = ", ".join(c.label for c in cfg.candidates)
    counts = sorted({r.origins for r in results})
    print(
        f"\nsettings (TrainerSection defaults): candidates {names}; x_size {cfg.x_size}; "
        f"{cfg.backtest_origins} backtest origins, horizon {cfg.backtest_horizon}, decided on "
        f"step {min(cfg.y_size, cfg.backtest_horizon)}; min_calibration {cfg.min_calibration}; "
        f"margin {cfg.promotion_margin:g}, coverage tolerance {cfg.coverage_tolerance:g}, "
        f"baseline {cfg.baseline}"
    )
    print(
        f"evaluated: the last {' / '.join(str(c) for c in counts)} origins of each series, "
        "one-step forecasts; production = the configuration decide() picks from the "
        f"{cfg.backtest_origins} origins before each"
    )
    header = (
        f"{'series':<9} {'freq':<6} {'obs':>5} {'origins':>7} {'period':<23} "
        f"{'prod/naive':>10} {'arima/naive':>11} {'cov80':>5} {'cov95':>5} "
        f"{'raw arima 80/95':>15}  {'arima failed':>12}  chosen (origins)"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        cov = {k: v / r.origins for k, v in r.hits.items()}
        chosen = ", ".join(f"{name} {n}" for name, n in r.chosen.most_common())
        print(
            f"{r.name:<9} {r.frequency:<6} {r.observations:>5} {r.origins:>7} "
            f"{r.first_origin + '..' + r.last_origin:<23} {r.ratio:>10.4f} "
            f"{r.arima_ratio:>11.4f} {_pct(cov['80'])} {_pct(cov['95'])} "
            f"{_pct(r.raw_arima['80']):>9}/{_pct(r.raw_arima['95'])}  "
            f"{r.arima_failed:>5} ({100 * r.arima_failed / r.origins:4.1f}%)  {chosen}"
        )
    print()
    for r in results:
        actions = ", ".join(f"{a} {n}" for a, n in r.actions.most_common())
        check = "-" if r.arima_ratio_score is None else f"{r.arima_ratio_score:.4f}"
        print(
            f"{r.name:<9} decisions: {actions}; production changed {r.switches} times; "
            f"chosen fit failed (naive fallback) at {r.chosen_failed} origins; "
            f"naive MAE {r.naive_mae:.6g} (the baseline, same origins); "
            f"ARIMA/naive by score(): {check}"
        )

    total = sum(r.origins for r in results)
    pooled = {k: sum(r.hits[k] for r in results) / total for k in ("80", "95")}
    print(
        f"\npooled over {len(results)} series ({total} origins): calibrated coverage "
        f"80%: {100 * pooled['80']:.1f}%, 95%: {100 * pooled['95']:.1f}%"
    )

    print("\ntiming (fits: run_backtest, one candidate at a time; per worker process):")
    for r in results:
        fit_total = sum(r.fit_s.values())
        per_origin = r.fitted // len(r.fit_s)
        families = ", ".join(f"{name} {1000 * s / per_origin:.2f}" for name, s in r.fit_s.items())
        print(
            f"  {r.name:<9} {r.fitted} origin forecasts ({per_origin} origins x "
            f"{len(r.fit_s)} candidates) in {fit_total:.1f} s = {r.fitted / fit_total:.0f}/s "
            f"(ms per origin: {families}); selection {r.origins} x decide() in "
            f"{r.select_s:.1f} s"
        )
    fitted = sum(r.fitted for r in results)
    print(
        f"  all: {fitted} origin forecasts, wall {wall_s:.1f} s with {jobs} worker process(es) "
        f"on {os.cpu_count()} cores = {fitted / wall_s:.0f} origin forecasts/s overall"
    )
    bad = [m for r in results for m in r.mismatches]
    checked = sum(r.checked for r in results)
    if bad:
        print(f"CHECK FAILED: step-1 scores differ with horizon 24 at: {', '.join(bad)}")
    else:
        print(
            f"checked: step-1 scores and decisions with horizon {cfg.backtest_horizon} equal "
            f"those with horizon 1 at {checked} origins"
        )

    ratio_met = all(r.ratio <= AIM_RATIO for r in results)
    cov_met = all(
        abs(100 * pooled[k] - nominal) <= AIM_COVERAGE_POINTS
        for k, nominal in (("80", 80.0), ("95", 95.0))
    )
    print(
        "\naim: production MAE ≤ 1.00 × naive for every series; pooled coverage within "  # noqa: RUF001
        "±3 points of 80% and 95%"
    )
    worst = max(results, key=lambda r: r.ratio)
    print(
        f"  MAE:      {'met' if ratio_met else 'NOT met'} "
        f"(worst {worst.name} {worst.ratio:.4f} x naive)"
    )
    print(
        f"  coverage: {'met' if cov_met else 'NOT met'} "
        f"({100 * pooled['80']:.1f}% and {100 * pooled['95']:.1f}%)"
    )
    return ratio_met and cov_met and not bad


def valuation_report() -> None:
    """The gold valuation model's backtest against naive and ARIMA on daily gold, with the
    trainer's default valuation settings (docs/valuation.md). Data: real FRED-derived daily
    and monthly series from ``arch.data`` with synthetic vintages, and the simulated source's
    daily gold (no real daily gold series ships in our packages): tests/valuation_data.py."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from metalcast_models.valuation import evaluate as evaluate_valuation
    from metalcast_trainer.config import TrainerSection
    from tests.valuation_data import END, LAGS, LEVELS, START, gold_closes, vintages

    cfg = TrainerSection().valuation.config()
    load = os.getloadavg()[0]
    began = time.perf_counter()
    closes, v = gold_closes(), vintages()
    result = evaluate_valuation(closes, v, LAGS, cfg, levels=LEVELS)
    seconds = time.perf_counter() - began
    print(
        "\n== gold valuation model (LightGBM on point-in-time macro + gold features) ==\n"
        f"data: {len(closes)} daily gold closes {START}..{END} (simulated source, seed 42); "
        f"{len(v)} vintages of {', '.join(LAGS)} (real values from arch.data, synthetic "
        "first-release-then-revision vintages)\n"
        f"backtest: the last {cfg.origins} origins, one step (the next close); LightGBM "
        f"refitted every {cfg.refit_every} origins on rows known at the origin, its grid "
        f"searched once on the rows before the first origin ({cfg.folds} expanding folds); "
        f"naive and ARIMA refitted at every origin on {cfg.x_size} closes; {seconds:.1f} s "
        f"(load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
        f"{os.cpu_count()} cores)"
    )
    summary = result.summary()
    print(f"  {'candidate':<10} {'MASE':>8} {'MAE':>9} {'MAE/naive':>10} {'fallbacks':>10}")
    for name, row in summary.items():
        fb = row.get("fallbacks")
        print(
            f"  {name:<10} {row['mase']:>8.4f} {row['mae']:>9.3f} {row['mae_ratio']:>10.4f} "
            f"{'' if fb is None else str(fb) + '/' + str(row['origins']):>10}"
        )
    bt = result.backtest
    naive_mae = float((bt["actual"] - bt["naive"]).abs().mean())
    model_mae = float((bt["actual"] - bt["model_price"]).abs().mean())
    fell = bt[bt["fallback"]]
    print(
        f"  lightgbm without the fallback: MAE {model_mae:.3f} ({model_mae / naive_mae:.4f} x "
        f"naive); on the {len(fell)} fallback origins the EMA-30 MAE "
        f"{float((fell['actual'] - fell['price']).abs().mean()):.3f}, the booster's "
        f"{float((fell['actual'] - fell['model_price']).abs().mean()):.3f}, naive's "
        f"{float((fell['actual'] - fell['naive']).abs().mean()):.3f}"
    )
    search = result.fit.search
    assert search is not None
    naive_cv = sum(search.naive_fold_mae) / len(search.naive_fold_mae)
    print(
        f"  decision: {result.decision.action}, {result.decision.reason}\n"
        f"  final grid search ({len(search.results)} combinations x {cfg.folds} folds): best "
        f"{search.best_params}, CV MAE of the log return {search.best_mae:.6f} "
        f"(no change: {naive_cv:.6f})"
    )
    top = sorted(result.fit.importances.items(), key=lambda kv: kv[1], reverse=True)[:5]
    print("  top features: " + ", ".join(f"{k} {100 * w:.1f}%" for k, w in top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--origins",
        type=int,
        default=500,
        help="evaluated origins per series: the last N (each also needs 168 before it)",
    )
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--series", nargs="*", help="only these (names as printed)")
    parser.add_argument(
        "--valuation",
        choices=("also", "only", "no"),
        default="also",
        help="the gold valuation model's backtest against naive and ARIMA",
    )
    args = parser.parse_args()
    if args.valuation == "only":
        valuation_report()
        return
    datasets = [d for d in DATASETS if not args.series or d.name in args.series]

    began, load = time.perf_counter(), os.getloadavg()[0]
    print(
        f"{len(datasets)} series, {args.origins} evaluated origins each, "
        f"{args.jobs} worker process(es), {os.cpu_count()} cores, BLAS threads capped at 1"
    )
    if args.jobs <= 1:
        results = [evaluate(d, args.origins) for d in datasets]
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(evaluate, datasets, [args.origins] * len(datasets)))
    wall = time.perf_counter() - began
    print(
        f"\nconditions: load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the "
        "end (other work on the machine slows the timings, not the quality figures)"
    )
    met = report(results, wall, args.jobs)
    print(f"\nall aims met: {'yes' if met else 'no'}")
    if args.valuation == "also":
        valuation_report()


if __name__ == "__main__":
    main()

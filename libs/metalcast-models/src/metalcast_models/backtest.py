"""Rolling-origin backtests, calibrated intervals and the champion/challenger decision.

A **candidate** is a model family with its hyperparameters. Its backtest refits it, exactly
as production fits, on the ``x_size`` observed values that end at each **origin** (an entry
of the series), and forecasts the next ``horizon`` entries. Each origin's forecast is keyed
by (candidate, origin) and carries the hash of its window, so a later run reuses it while the
window is unchanged and only new origins are fitted.

Scores, per horizon step ``h`` (``e = actual - point``):

* ``mae``, ``rmse``, ``bias`` (mean of ``point - actual``: positive = too high);
* ``mase``: mean of ``|e| / scale`` where ``scale`` is the window's mean absolute one-step
  change (Hyndman's MASE with the in-window naive error as the scale);
* ``mae_ratio``: ``mae`` over the naive last value's ``mae`` on the same origins;
* ``coverage_80``/``coverage_95`` and ``winkler_80``/``winkler_95`` of the **calibrated**
  intervals, and ``raw_coverage_80``/``raw_coverage_95`` of the model's own intervals where
  the family gives them (ARIMA).

Intervals are calibrated by **sequential split-conformal prediction on scaled absolute
errors**: the nonconformity score of an origin is ``|e_h| / scale``; the interval at a new
origin is ``point ± q_h · scale`` with ``q_h`` the ``ceil((n + 1) c)``-th smallest of the
``n`` most recent scores whose outcome was already known at that origin. In the backtest
each origin is calibrated only on earlier origins (at least ``min_calibration``), so the
coverage reported is out of sample. Production uses the same rule on every scored origin.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from metalcast_models._quiet import quiet_sktime
from metalcast_models.families import FloatArray, get_family
from metalcast_models.fitting import as_entries, jsonable

LEVELS = (0.8, 0.95)
INTERVAL_METHOD = "sequential split-conformal on scaled absolute backtest errors"
_Z = {0.8: 1.2815515655446004, 0.95: 1.959963984540054}


def _label(level: float) -> str:
    return f"{level * 100:g}"


# --- candidates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A family with complete hyperparameters; ``key`` names the configuration."""

    name: str
    family: str
    hyperparameters: Mapping[str, Any]
    x_size: int

    @property
    def key(self) -> str:
        blob = json.dumps(
            {"family": self.family, "hp": jsonable(self.hyperparameters), "x": self.x_size},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "hyperparameters": jsonable(self.hyperparameters),
            "x_size": self.x_size,
            "key": self.key,
        }


def make_candidate(
    family: str,
    x_size: int,
    hyperparameters: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Candidate:
    """A candidate with its family's defaults merged in (``ValueError`` on unknown names)."""
    fam = get_family(family)
    return Candidate(name or fam.name, fam.name, fam.resolve(hyperparameters), x_size)


def window_hash(values: FloatArray) -> str:
    """Content hash of a window (its float64 values, in order)."""
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()[:16]


def window_scale(values: FloatArray) -> float:
    """Mean absolute one-step change of a window (the MASE scale); never zero."""
    scale = float(np.mean(np.abs(np.diff(values)))) if len(values) > 1 else 0.0
    return scale if scale > 0 else max(1e-12, 1e-9 * float(np.max(np.abs(values))))


# --- forecasts at origins ---------------------------------------------------------------


@dataclass(frozen=True)
class OriginForecast:
    """One candidate's forecast from one origin (the window's last entry)."""

    origin: datetime
    window_hash: str
    scale: float
    points: FloatArray  # steps 1..horizon
    se: FloatArray | None  # the model's own standard errors, where it gives them
    failed: str | None = None  # the fit failed: ``points`` are the naive forecast


@dataclass(frozen=True)
class Series:
    """One symbol's observed values (oldest first) and their hours."""

    values: FloatArray
    stamps: Sequence[datetime]

    def __post_init__(self) -> None:
        if len(self.values) != len(self.stamps):
            raise ValueError("values and stamps differ in length")

    def origins(self, x_size: int, count: int) -> list[int]:
        """Indices of the last ``count`` origins with a full window and a known next value."""
        last = len(self.values) - 2
        first = max(x_size - 1, last - count + 1)
        return list(range(first, last + 1)) if last >= x_size - 1 else []


def forecast_at(
    candidate: Candidate, window: FloatArray, origin: datetime, horizon: int
) -> OriginForecast:
    """Fit ``candidate`` on ``window`` exactly as production does and forecast."""
    fam = get_family(candidate.family)
    digest, scale = window_hash(window), window_scale(window)
    try:
        with warnings.catch_warnings(), quiet_sktime():
            warnings.simplefilter("ignore")
            forecaster = fam.build(dict(candidate.hyperparameters))
            forecaster.fit(as_entries(window, origin, "y"))
            problem = fam.check_fitted(forecaster)
            if problem is None:
                points, se = fam.forecast_steps(forecaster, horizon)
                if not np.all(np.isfinite(points)):
                    problem = "forecast is not finite"
    except Exception as exc:  # a failed fit is scored as naive, and counted
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        naive = np.full(horizon, float(window[-1]))
        return OriginForecast(origin, digest, scale, naive, None, problem)
    return OriginForecast(origin, digest, scale, np.asarray(points, float), se)


def forecast_origins(
    candidate: Candidate,
    series: Series,
    indices: Sequence[int],
    horizon: int,
) -> list[OriginForecast]:
    """Forecasts at every origin in ``indices`` (closed forms where the family has one)."""
    x = candidate.x_size
    fam = get_family(candidate.family)
    windows = [series.values[i - x + 1 : i + 1] for i in indices]
    if fam.batch_points is not None and windows:
        try:
            block = np.vstack(windows)
            points = fam.batch_points(block, horizon, dict(candidate.hyperparameters))
        except NotImplementedError:
            pass
        else:
            return [
                OriginForecast(series.stamps[i], window_hash(w), window_scale(w), points[k], None)
                for k, (i, w) in enumerate(zip(indices, windows, strict=True))
            ]
    return [
        forecast_at(candidate, w, series.stamps[i], horizon)
        for i, w in zip(indices, windows, strict=True)
    ]


CacheKey = tuple[str, datetime]  # (candidate key, origin)


@dataclass
class BacktestRun:
    """Forecasts per candidate for one symbol: reused from the cache or newly fitted."""

    forecasts: dict[str, list[OriginForecast]] = field(default_factory=dict)
    new: dict[str, list[OriginForecast]] = field(default_factory=dict)
    reused: int = 0
    fitted: int = 0
    seconds: float = 0.0


def run_backtest(
    candidates: Iterable[Candidate],
    series: Series,
    *,
    origins: int,
    horizon: int,
    cache: Mapping[CacheKey, OriginForecast] | None = None,
) -> BacktestRun:
    """Every candidate's forecasts at the last ``origins`` origins of ``series``."""
    began = time.perf_counter()
    cache = cache or {}
    out = BacktestRun()
    for cand in candidates:
        indices = series.origins(cand.x_size, origins)
        have: dict[int, OriginForecast] = {}
        missing: list[int] = []
        for i in indices:
            hit = cache.get((cand.key, series.stamps[i]))
            x = cand.x_size
            if (
                hit is not None
                and len(hit.points) >= horizon
                and hit.window_hash == window_hash(series.values[i - x + 1 : i + 1])
            ):
                have[i] = hit
            else:
                missing.append(i)
        fresh = forecast_origins(cand, series, missing, horizon)
        have.update(zip(missing, fresh, strict=True))
        out.forecasts[cand.key] = [have[i] for i in indices]
        out.new[cand.key] = fresh
        out.reused += len(indices) - len(missing)
        out.fitted += len(missing)
    out.seconds = time.perf_counter() - began
    return out


# --- scores ------------------------------------------------------------------------------


def _actuals(series: Series, forecasts: Sequence[OriginForecast], horizon: int) -> FloatArray:
    position = {stamp: i for i, stamp in enumerate(series.stamps)}
    out = np.full((len(forecasts), horizon), np.nan)
    n = len(series.values)
    for k, f in enumerate(forecasts):
        i = position[f.origin]
        stop = min(n, i + 1 + horizon)
        out[k, : stop - i - 1] = series.values[i + 1 : stop]
    return out


def conformal_quantile(scores: FloatArray, level: float) -> float:
    """The ``ceil((n + 1) level)``-th smallest score (``inf`` when ``n`` is too small)."""
    n = len(scores)
    k = math.ceil((n + 1) * level)
    if n == 0 or k > n:
        return math.inf
    return float(np.partition(scores, k - 1)[k - 1])


@dataclass(frozen=True)
class Score:
    """A candidate's backtest: per-step figures and the summary used to decide."""

    candidate: dict[str, Any]
    origins: int
    first_origin: datetime | None
    last_origin: datetime | None
    failures: int
    steps: list[dict[str, float | int | None]]
    summary: dict[str, float | int | None]
    calibration: dict[str, Any]
    # origin -> mean scaled absolute error over the selection steps (for paired tests)
    losses: Mapping[datetime, float] = field(default_factory=dict, repr=False, compare=False)

    def json_text(self) -> str:
        """:meth:`as_json` encoded (non-finite numbers as ``null``): what the registry stores
        for a backtest, computed once however many tables it goes to."""
        return json.dumps(jsonable(self.as_json()), allow_nan=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "origins": self.origins,
            "first_origin": self.first_origin.isoformat() if self.first_origin else None,
            "last_origin": self.last_origin.isoformat() if self.last_origin else None,
            "failures": self.failures,
            "steps": self.steps,
            "summary": self.summary,
            "calibration": self.calibration,
        }


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def score(
    candidate: Candidate,
    series: Series,
    forecasts: Sequence[OriginForecast],
    *,
    horizon: int,
    select_steps: int = 1,
    min_calibration: int = 24,
    calibration_window: int = 168,
) -> Score:
    """Score one candidate's forecasts against what happened (see the module docstring)."""
    actual = _actuals(series, forecasts, horizon)
    points = np.array([f.points[:horizon] for f in forecasts]).reshape(len(forecasts), horizon)
    scales = np.array([f.scale for f in forecasts], dtype=float)
    position = {stamp: i for i, stamp in enumerate(series.stamps)}
    last = np.array([series.values[position[f.origin]] for f in forecasts], dtype=float)
    errors = actual - points
    scores = np.abs(errors) / scales[:, None]
    steps: list[dict[str, float | int | None]] = []
    q_now: dict[str, list[float | None]] = {_label(c): [] for c in LEVELS}
    for h in range(horizon):
        known = np.isfinite(actual[:, h])
        e = errors[known, h]
        naive_e = actual[known, h] - last[known]
        row: dict[str, float | int | None] = {"step": h + 1, "n": int(known.sum())}
        if known.any():
            mae = float(np.mean(np.abs(e)))
            naive_mae = float(np.mean(np.abs(naive_e)))
            row |= {
                "mae": mae,
                "rmse": float(math.sqrt(float(np.mean(e * e)))),
                "mase": float(np.mean(scores[known, h])),
                "mae_ratio": _num(mae / naive_mae) if naive_mae > 0 else None,
                "naive_mae": naive_mae,
                "bias": float(np.mean(-e)),
            }
        sequential = _sequential(
            scores[:, h], known, errors[:, h], scales, h, min_calibration, calibration_window
        )
        for level in LEVELS:
            cov, wink, n_scored = sequential[level]
            row[f"coverage_{_label(level)}"] = cov
            row[f"winkler_{_label(level)}"] = wink
            row[f"scored_{_label(level)}"] = n_scored
            row[f"raw_coverage_{_label(level)}"] = _raw_coverage(forecasts, errors, known, h, level)
            recent = scores[known, h][-calibration_window:]
            q_now[_label(level)].append(_num(conformal_quantile(recent, level)))
        steps.append(row)
    summary = _summary(steps[:select_steps])
    chosen = scores[:, :select_steps]
    complete = np.all(np.isfinite(chosen), axis=1)
    losses = {f.origin: float(np.mean(chosen[k])) for k, f in enumerate(forecasts) if complete[k]}
    calibration = {
        "method": INTERVAL_METHOD,
        "steps": horizon,
        **{f"q{k}": v for k, v in q_now.items()},
        "coverage_80": summary.get("coverage_80"),
        "coverage_95": summary.get("coverage_95"),
    }
    return Score(
        candidate=candidate.describe(),
        origins=len(forecasts),
        first_origin=forecasts[0].origin if forecasts else None,
        last_origin=forecasts[-1].origin if forecasts else None,
        failures=sum(1 for f in forecasts if f.failed),
        steps=steps,
        summary=summary,
        calibration=calibration,
        losses=losses,
    )


def _sequential(
    scores: FloatArray,
    known: np.ndarray[Any, np.dtype[np.bool_]],
    errors: FloatArray,
    scales: FloatArray,
    h: int,
    min_calibration: int,
    window: int,
) -> dict[float, tuple[float | None, float | None, int]]:
    """Per level: coverage and Winkler score of intervals calibrated only on earlier
    outcomes (origin ``j``'s step-``h`` outcome is known at origin ``k`` when
    ``j + h + 1 <= k``), over the ``window`` most recent. One pass, a sorted window."""
    ordered: list[float] = []  # the calibration scores, sorted
    arrived: deque[float] = deque()  # the same, oldest first
    totals = {level: [0, 0.0, 0] for level in LEVELS}  # hits, winkler, n
    next_in = 0
    for k in range(len(scores)):
        while next_in <= k - h - 1:
            if known[next_in]:
                value = float(scores[next_in])
                insort(ordered, value)
                arrived.append(value)
                if len(arrived) > window:
                    ordered.pop(bisect_left(ordered, arrived.popleft()))
            next_in += 1
        n = len(ordered)
        if not known[k] or n < min_calibration:
            continue
        for level, total in totals.items():
            rank = math.ceil((n + 1) * level)
            half = (ordered[rank - 1] if rank <= n else math.inf) * scales[k]
            miss = max(0.0, abs(errors[k]) - half)
            total[0] += int(abs(errors[k]) <= half)
            total[1] += 2 * half + (2 / (1 - level)) * miss
            total[2] += 1
    return {
        level: (hits / n, wink / n, int(n)) if n else (None, None, 0)
        for level, (hits, wink, n) in totals.items()
    }


def _raw_coverage(
    forecasts: Sequence[OriginForecast],
    errors: FloatArray,
    known: np.ndarray[Any, np.dtype[np.bool_]],
    h: int,
    level: float,
) -> float | None:
    se = [f.se[h] if f.se is not None and len(f.se) > h else math.nan for f in forecasts]
    half = _Z[level] * np.asarray(se, dtype=float)
    usable = known & np.isfinite(half)
    if not usable.any():
        return None
    return float(np.mean(np.abs(errors[usable, h]) <= half[usable]))


def _summary(rows: Sequence[Mapping[str, float | int | None]]) -> dict[str, float | int | None]:
    """The mean of each figure over the selection steps (``None`` where missing)."""
    keys = ("mase", "mae_ratio", "mae", "rmse", "bias", "coverage_80", "coverage_95")
    out: dict[str, float | int | None] = {}
    for key in keys:
        values = [float(v) for r in rows if (v := r.get(key)) is not None]
        out[key] = float(np.mean(values)) if values else None
    for level in LEVELS:
        counts = [int(v) for r in rows if (v := r.get(f"scored_{_label(level)}")) is not None]
        out[f"scored_{_label(level)}"] = min(counts) if counts else 0
    out["coverage_error"] = coverage_error(out)
    out["coverage_excess"] = coverage_error(out, beyond_noise=True)
    return out


def coverage_error(summary: Mapping[str, Any], *, beyond_noise: bool = False) -> float | None:
    """The larger distance of the 80% and 95% coverage from nominal; ``beyond_noise``: less
    what sampling explains (1.96 binomial standard errors for the origins scored)."""
    worst = 0.0
    for level in LEVELS:
        cov = summary.get(f"coverage_{_label(level)}")
        if cov is None:
            return None
        distance = abs(float(cov) - level)
        if beyond_noise:
            n = int(summary.get(f"scored_{_label(level)}") or 0)
            noise = 1.96 * math.sqrt(level * (1 - level) / n) if n else math.inf
            distance = max(0.0, distance - noise)
        worst = max(worst, distance)
    return worst


# --- champion / challenger -------------------------------------------------------------

Action = Literal["first", "refit", "promote", "keep", "pinned"]


@dataclass(frozen=True)
class Decision:
    """What to fit for production and whether the pointer may move to it."""

    action: Action
    chosen: Candidate  # the configuration fitted on the current window
    best: Candidate  # the best challenger
    move_pointer: bool
    reason: str


@dataclass(frozen=True)
class Rules:
    margin: float = 0.01  # a challenger's MASE must be at least this much lower (relative)
    # and its coverage no further from nominal than the champion's, or within this
    # tolerance, both beyond sampling noise (``coverage_excess``)
    coverage_tolerance: float = 0.03
    baseline: str | None = "naive"  # preferred unless beaten by the margin
    # and the MASE difference must be significant: a one-sided Diebold-Mariano test on the
    # paired per-origin losses at this level, Bonferroni-corrected over the challengers
    # (0: no test). Without it, noise over 168 origins promoted challengers that then lost.
    significance: float = 0.05
    lag: int = 0  # HAC lag of the test: the selection steps - 1 (overlapping outcomes)


def _mase(scores: Mapping[str, Score], c: Candidate) -> float:
    value = scores[c.key].summary.get("mase") if c.key in scores else None
    return math.inf if value is None else float(value)


def diebold_mariano(
    a: Mapping[datetime, float], b: Mapping[datetime, float], lag: int = 0
) -> tuple[float, int]:
    """The Diebold-Mariano statistic of ``a - b`` on their common origins (negative: ``a``
    has the lower loss), with a Newey-West variance of ``lag`` lags; and the origins used."""
    common = sorted(set(a) & set(b))
    d = np.array([a[o] - b[o] for o in common], dtype=float)
    n = len(d)
    if n < 10:
        return math.nan, n
    centred = d - d.mean()
    variance = float(centred @ centred) / n
    for k in range(1, min(lag, n - 1) + 1):
        variance += 2 * (1 - k / (lag + 1)) * float(centred[k:] @ centred[:-k]) / n
    if variance <= 0:
        return (-math.inf if d.mean() < 0 else math.inf), n
    return float(d.mean() / math.sqrt(variance / n)), n


def _significant(
    scores: Mapping[str, Score], a: Candidate, b: Candidate, rules: Rules, tests: int
) -> bool:
    if rules.significance <= 0:
        return True
    la, lb = scores[a.key].losses, scores[b.key].losses
    if not la or not lb:  # no per-origin losses to test on
        return True
    stat, _ = diebold_mariano(la, lb, rules.lag)
    if math.isnan(stat):
        return False
    critical = NormalDist().inv_cdf(1 - rules.significance / max(1, tests))
    return stat <= -critical


def _beats(
    scores: Mapping[str, Score], a: Candidate, b: Candidate, rules: Rules, tests: int = 1
) -> bool:
    if _mase(scores, a) > (1 - rules.margin) * _mase(scores, b):
        return False
    if not _significant(scores, a, b, rules, tests):
        return False
    ea = scores[a.key].summary.get("coverage_excess")
    eb = scores[b.key].summary.get("coverage_excess")
    if ea is None or eb is None:
        return eb is None
    return float(ea) <= max(float(eb), rules.coverage_tolerance) + 1e-12


def decide(
    candidates: Sequence[Candidate],
    scores: Mapping[str, Score],
    champion: Candidate | None,
    *,
    rules: Rules = Rules(),
    pinned: str | None = None,
) -> Decision:
    """Champion/challenger. ``champion`` is the production version's configuration (scored
    on the same origins); ``pinned`` says who pinned production (the pointer stays)."""
    if not candidates:
        raise ValueError("no candidates")
    ranked = sorted(candidates, key=lambda c: _mase(scores, c))
    best = ranked[0]  # the best challenger
    chosen = best  # what champion/challenger would serve
    note = ""
    tests = max(1, len(candidates) - 1)  # challengers compared: Bonferroni
    base = next((c for c in candidates if c.name == rules.baseline), None)
    if base is not None and best.key != base.key and not _beats(scores, best, base, rules, tests):
        note = (
            f" ({best.name} MASE {_mase(scores, best):.4g} does not beat "
            f"{base.name} {_mase(scores, base):.4g} by the margin, significantly)"
        )
        chosen = base
    if champion is None:
        decision = Decision(
            "first",
            chosen,
            best,
            True,
            f"first model: {chosen.name} MASE {_mase(scores, chosen):.4g}{note}",
        )
    elif best.key == champion.key:
        decision = Decision(
            "refit",
            champion,
            best,
            True,
            f"refit champion {champion.name} (MASE {_mase(scores, champion):.4g}, "
            f"best of {len(candidates)})",
        )
    elif chosen.key != champion.key and _beats(scores, chosen, champion, rules, tests):
        decision = Decision(
            "promote",
            chosen,
            best,
            True,
            f"challenger {chosen.name} MASE {_mase(scores, chosen):.4g} beats champion "
            f"{champion.name} {_mase(scores, champion):.4g} by the margin{note}",
        )
    else:
        decision = Decision(
            "keep",
            champion,
            best,
            True,
            f"kept {champion.name}: challenger {best.name} MASE {_mase(scores, best):.4g} "
            f"vs champion {_mase(scores, champion):.4g}"
            + ("" if note else " (not better by the margin and significantly, or worse coverage)"),
        )
    if pinned is not None:
        return Decision(
            "pinned",
            decision.chosen,
            best,
            False,
            f"pinned by {pinned}: recorded, not promoted ({decision.reason})",
        )
    return decision


# --- calibrated intervals for a production forecast ------------------------------------


def calibrated_bounds(
    points: FloatArray, calibration: Mapping[str, Any], scale: float
) -> dict[str, tuple[FloatArray, FloatArray]]:
    """``point ± q_h · scale`` per level; steps past the calibrated ones widen with
    ``sqrt(h / H)`` from the last calibrated step ``H``."""
    bounds: dict[str, tuple[FloatArray, FloatArray]] = {}
    horizon = len(points)
    for level in LEVELS:
        label = _label(level)
        qs = [q for q in calibration.get(f"q{label}", []) if q is not None]
        if not qs:
            raise ValueError(f"no {label}% calibration")
        last_h = len(qs)
        half = (
            np.array(
                [
                    qs[h] if h < last_h else qs[-1] * math.sqrt((h + 1) / last_h)
                    for h in range(horizon)
                ],
                dtype=float,
            )
            * scale
        )
        bounds[label] = (points - half, points + half)
    return bounds

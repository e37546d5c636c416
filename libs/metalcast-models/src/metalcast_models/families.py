"""Model families, chosen by name: how to build an estimator and what to record of it.

Every family declares its hyperparameters with their defaults; ``Model(params=...)``
overrides some of them and an unknown name is an error. ``extract_params`` turns a fitted
forecaster into plain JSON-able numbers (non-finite values become ``None``). A family may
also give fast paths for the one-step forecast and the in-sample residuals (sktime's
generic ``predict``/``predict_residuals`` cost ~8-9 ms each on 12 points, as much as half
an ARIMA fit; the drift's refits at every point, ~125 ms); they must agree with the
generic ones, except the drift's residuals, which are the drift method's own fitted values
(the previous value plus the slope) where sktime's generic path backcasts.

sktime is imported inside the builders: importing this module stays cheap, and only a
process that fits pays sktime's import cost (seconds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metalcast_models._quiet import quiet_sktime

JsonNumber = float | None
FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def _number(value: Any) -> JsonNumber:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _no_check(fitted: Any) -> str | None:
    return None


@dataclass(frozen=True)
class Family:
    """One kind of model.

    ``build`` receives the complete hyperparameters (defaults merged with overrides) and
    returns an unfitted sktime forecaster. ``check_fitted`` returns why a fitted forecaster
    must not be used (e.g. the optimiser did not converge), or ``None``.
    """

    name: str
    hyperparameters: Mapping[str, Any]
    build: Callable[[dict[str, Any]], Any]
    extract_params: Callable[[Any], dict[str, JsonNumber]]
    check_fitted: Callable[[Any], str | None] = field(default=_no_check)
    description: str = ""
    one_step: Callable[[Any], float] | None = None
    residuals: Callable[[Any], np.ndarray[Any, np.dtype[np.float64]]] | None = None
    # Optional: (points, standard errors or None) for steps 1..h of a fitted forecaster.
    steps: Callable[[Any, int], tuple[FloatArray, FloatArray | None]] | None = None
    # Optional closed form over many windows at once (rows: windows, oldest value first):
    # the h-step point forecasts. Must equal fitting each window (checked in a test).
    batch_points: Callable[[FloatArray, int, dict[str, Any]], FloatArray] | None = None

    def forecast_steps(self, fitted: Any, horizon: int) -> tuple[FloatArray, FloatArray | None]:
        """Point forecasts for steps ``1..horizon`` and, where the family gives them cheaply,
        their standard errors (the model's own, uncalibrated)."""
        if self.steps is not None:
            return self.steps(fitted, horizon)
        with quiet_sktime():
            points = np.asarray(fitted.predict(fh=list(range(1, horizon + 1))), dtype=float)
        return points, None

    def forecast_one(self, fitted: Any) -> float:
        """The one-step-ahead point forecast of a fitted forecaster."""
        if self.one_step is not None:
            return self.one_step(fitted)
        with quiet_sktime():
            return float(fitted.predict(fh=[1]).iloc[0])

    def in_sample_residuals(self, fitted: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        """One-step in-sample residuals, ``NaN`` where the model has no prediction."""
        if self.residuals is not None:
            return self.residuals(fitted)
        with quiet_sktime():
            return np.asarray(fitted.predict_residuals(), dtype=float)

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The defaults updated with ``overrides``; ``ValueError`` on an unknown name."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.hyperparameters))
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {', '.join(unknown)} for family {self.name!r}; "
                f"known: {', '.join(sorted(self.hyperparameters))}"
            )
        return {**self.hyperparameters, **overrides}

    def create(self, hyperparameters: Mapping[str, Any] | None = None) -> Any:
        """A new unfitted forecaster with ``hyperparameters`` (resolved against defaults)."""
        with quiet_sktime():
            return self.build(self.resolve(hyperparameters))


# --- arima -----------------------------------------------------------------------------


def _build_arima(hp: dict[str, Any]) -> Any:
    from sktime.forecasting.arima import ARIMA

    hp = dict(hp)
    hp["order"] = tuple(hp["order"])  # JSON round trips turn tuples into lists
    hp["seasonal_order"] = tuple(hp["seasonal_order"])
    return ARIMA(**hp)


def _arima_results(fitted: Any) -> Any:
    """statsmodels' SARIMAXResults behind sktime's ARIMA (via pmdarima)."""
    return fitted._forecaster.arima_res_


def _extract_arima(fitted: Any) -> dict[str, JsonNumber]:
    with quiet_sktime():
        raw = fitted.get_fitted_params()
    # intercept, ar.L1 (ma.L1, ...), sigma2, aic, aicc, bic, hqic
    params = {str(k): _number(v) for k, v in raw.items()}
    results = _arima_results(fitted)
    if "sigma2" not in params:  # concentrate_scale=True: sigma2 is not a parameter
        params["sigma2"] = _number(results.scale)
    params["nobs"] = _number(results.nobs)
    return params


# L-BFGS-B sometimes stops in its line search (warnflag 2) at the optimum of these short,
# flat likelihoods: statsmodels then says converged=False although the gradient is ~1e-5.
# (1.6% of 1,000 generated 12-point series; Powell/Nelder-Mead land on the same
# parameters.) Such a stop is accepted when the gradient is this small.
LINE_SEARCH_GRADIENT_TOLERANCE = 1e-3


def _check_arima(fitted: Any) -> str | None:
    results = _arima_results(fitted)
    retvals = getattr(results, "mle_retvals", None) or {}
    if retvals.get("converged") is False:
        gradient = retvals.get("gopt")
        largest = float(np.max(np.abs(gradient))) if gradient is not None else math.inf
        stalled_at_optimum = (
            retvals.get("warnflag") == 2 and largest <= LINE_SEARCH_GRADIENT_TOLERANCE
        )
        if not stalled_at_optimum:
            iterations = retvals.get("iterations", "?")
            return (
                f"ARIMA optimiser did not converge ({iterations} iterations, "
                f"max |gradient| {largest:.2g})"
            )
    for name, value in zip(results.param_names, results.params, strict=True):
        if not math.isfinite(float(value)):
            return f"ARIMA parameter {name} is not finite"
    return None


def _arima_one_step(fitted: Any) -> float:
    return float(np.asarray(_arima_results(fitted).forecast(1), dtype=float)[0])


def _arima_residuals(fitted: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    # statsmodels' one-step residuals; the first d + D*s come from the diffuse start,
    # where sktime's predict_residuals has no prediction (NaN): match it.
    model = fitted._forecaster
    residuals = np.array(_arima_results(fitted).resid, dtype=float)
    seasonal = model.seasonal_order or (0, 0, 0, 0)
    residuals[: int(model.order[1]) + int(seasonal[1]) * int(seasonal[3])] = np.nan
    return residuals


def _arima_steps(fitted: Any, horizon: int) -> tuple[FloatArray, FloatArray | None]:
    forecast = _arima_results(fitted).get_forecast(horizon)
    points = np.asarray(forecast.predicted_mean, dtype=float)
    se = np.asarray(forecast.se_mean, dtype=float)
    return points, se


ARIMA_FAMILY = Family(
    name="arima",
    hyperparameters={
        "order": (1, 1, 0),
        "seasonal_order": (0, 0, 0, 0),
        "with_intercept": True,
        "suppress_warnings": True,
        "method": "lbfgs",
        "maxiter": 50,
        "trend": None,
        "enforce_stationarity": True,
        "enforce_invertibility": True,
        "simple_differencing": False,
        "concentrate_scale": False,
    },
    build=_build_arima,
    extract_params=_extract_arima,
    check_fitted=_check_arima,
    description="sktime ARIMA (pmdarima/statsmodels SARIMAX); default ARIMA(1,1,0) with drift",
    one_step=_arima_one_step,
    residuals=_arima_residuals,
    steps=_arima_steps,
)


# --- naive -----------------------------------------------------------------------------


def _build_naive(hp: dict[str, Any]) -> Any:
    from sktime.forecasting.naive import NaiveForecaster

    return NaiveForecaster(**hp)


def _naive_is_last(fitted: Any) -> bool:
    return (
        fitted.strategy == "last" and fitted.window_length is None and getattr(fitted, "sp", 1) == 1
    )


def _fitted_values(fitted: Any) -> FloatArray:
    """The series a naive/drift forecaster was fitted on, oldest first."""
    return np.asarray(fitted._y, dtype=float)


def _extract_naive(fitted: Any) -> dict[str, JsonNumber]:
    if _naive_is_last(fitted):
        return {"last": _number(_fitted_values(fitted)[-1])}
    with quiet_sktime():
        level = fitted.predict(fh=[1]).iloc[0]
    key = "last" if fitted.strategy == "last" else "level"
    return {key: _number(level)}


def _naive_one_step(fitted: Any) -> float:
    if _naive_is_last(fitted):
        return float(_fitted_values(fitted)[-1])
    with quiet_sktime():
        return float(fitted.predict(fh=[1]).iloc[0])


def _naive_residuals(fitted: Any) -> FloatArray:
    """Each value against the one before it (the first has no prediction: ``NaN``); other
    strategies through sktime."""
    if _naive_is_last(fitted):
        y = _fitted_values(fitted)
        residuals: FloatArray = np.concatenate([[math.nan], np.diff(y)])
        return residuals
    with quiet_sktime():
        return np.asarray(fitted.predict_residuals(), dtype=float)


def _naive_batch(windows: FloatArray, horizon: int, hp: dict[str, Any]) -> FloatArray:
    if hp.get("strategy") != "last" or hp.get("window_length") is not None or hp.get("sp") != 1:
        raise NotImplementedError("closed form only for strategy='last', sp=1")
    return np.repeat(windows[:, -1:], horizon, axis=1)


NAIVE_FAMILY = Family(
    name="naive",
    hyperparameters={"strategy": "last", "window_length": None, "sp": 1},
    build=_build_naive,
    extract_params=_extract_naive,
    description="sktime NaiveForecaster; default: repeat the last value",
    one_step=_naive_one_step,
    residuals=_naive_residuals,
    batch_points=_naive_batch,
)


# --- drift -----------------------------------------------------------------------------


def _build_drift(hp: dict[str, Any]) -> Any:
    from sktime.forecasting.naive import NaiveForecaster

    return NaiveForecaster(strategy="drift", **hp)


def _drift_line(fitted: Any) -> tuple[FloatArray, float]:
    """The window a drift forecaster uses and its slope (the window's average change)."""
    y = _fitted_values(fitted)
    window = fitted.window_length or len(y)
    y = y[-window:]
    return y, float((y[-1] - y[0]) / (len(y) - 1))


def _extract_drift(fitted: Any) -> dict[str, JsonNumber]:
    y, slope = _drift_line(fitted)
    return {"last": _number(y[-1]), "slope": _number(slope)}


def _drift_one_step(fitted: Any) -> float:
    y, slope = _drift_line(fitted)
    return float(y[-1] + slope)


def _drift_residuals(fitted: Any) -> FloatArray:
    """The drift method's fitted values are the previous value plus the slope (fpp3 5.2,
    R's forecast::rwf, and what sktime's own interval variance uses); the residuals are each
    value against them, ``NaN`` for the first. sktime's generic ``predict_residuals`` refits
    at every point instead (~125 ms on 20 points) and backcasts the first ones."""
    y = _fitted_values(fitted)
    _, slope = _drift_line(fitted)
    residuals: FloatArray = np.concatenate([[math.nan], np.diff(y) - slope])
    return residuals


def _drift_batch(windows: FloatArray, horizon: int, hp: dict[str, Any]) -> FloatArray:
    if hp.get("window_length") is not None:
        raise NotImplementedError("closed form only for the whole window")
    slope = (windows[:, -1] - windows[:, 0]) / (windows.shape[1] - 1)
    steps = np.arange(1, horizon + 1, dtype=float)
    result: FloatArray = windows[:, -1:] + slope[:, None] * steps[None, :]
    return result


DRIFT_FAMILY = Family(
    name="drift",
    hyperparameters={"window_length": None},
    build=_build_drift,
    extract_params=_extract_drift,
    description="random walk with drift: the last value plus the window's average change",
    one_step=_drift_one_step,
    residuals=_drift_residuals,
    batch_points=_drift_batch,
)


# --- theta -----------------------------------------------------------------------------


def _build_theta(hp: dict[str, Any]) -> Any:
    from sktime.forecasting.theta import ThetaForecaster

    return ThetaForecaster(**hp)


def _extract_theta(fitted: Any) -> dict[str, JsonNumber]:
    with quiet_sktime():
        raw = fitted.get_fitted_params()
    params = {str(k): _number(v) for k, v in raw.items() if _number(v) is not None}
    # sktime stores the drift (half the slope of the linear trend) as ``trend_``.
    params["drift"] = _number(getattr(fitted, "trend_", None))
    return params


def _check_theta(fitted: Any) -> str | None:
    if _number(getattr(fitted, "trend_", None)) is None:
        return "theta drift is not finite"
    return None


THETA_FAMILY = Family(
    name="theta",
    hyperparameters={"sp": 1, "deseasonalize": False},
    build=_build_theta,
    extract_params=_extract_theta,
    check_fitted=_check_theta,
    description="sktime ThetaForecaster (SES with drift); robust on a dozen points",
)


# --- ses (exponential smoothing) ---------------------------------------------------------


def _build_ses(hp: dict[str, Any]) -> Any:
    from sktime.forecasting.exp_smoothing import ExponentialSmoothing

    return ExponentialSmoothing(**hp)


def _extract_ses(fitted: Any) -> dict[str, JsonNumber]:
    params = fitted._fitted_forecaster.params
    return {
        "smoothing_level": _number(params.get("smoothing_level")),
        "initial_level": _number(params.get("initial_level")),
        "smoothing_trend": _number(params.get("smoothing_trend")),
        "damping_trend": _number(params.get("damping_trend")),
    }


def _check_ses(fitted: Any) -> str | None:
    level = fitted._fitted_forecaster.params.get("smoothing_level")
    if _number(level) is None:
        return "exponential smoothing level is not finite"
    return None


SES_FAMILY = Family(
    name="ses",
    hyperparameters={"trend": None, "damped_trend": False, "initialization_method": "estimated"},
    build=_build_ses,
    extract_params=_extract_ses,
    check_fitted=_check_ses,
    description="sktime ExponentialSmoothing (statsmodels); default: simple, ETS(A,N,N)",
)


FAMILIES: dict[str, Family] = {
    f.name: f for f in (ARIMA_FAMILY, NAIVE_FAMILY, DRIFT_FAMILY, THETA_FAMILY, SES_FAMILY)
}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}"
        ) from None


def register_family(family: Family) -> None:
    """Add a family to the registry (in this process only: pool workers do not see it)."""
    if family.name in FAMILIES:
        raise ValueError(f"model family {family.name!r} is already registered")
    FAMILIES[family.name] = family

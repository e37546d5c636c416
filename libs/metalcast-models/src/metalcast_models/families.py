"""Model families, chosen by name: how to build an estimator and what to record of it.

Every family declares its hyperparameters with their defaults; ``Model(params=...)``
overrides some of them and an unknown name is an error. ``extract_params`` turns a fitted
forecaster into plain JSON-able numbers (non-finite values become ``None``). A family may
also give fast paths for the one-step forecast and the in-sample residuals (sktime's
generic ``predict``/``predict_residuals`` cost ~8-9 ms each on 12 points, as much as half
an ARIMA fit); they must agree with the generic ones.

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
)


# --- naive -----------------------------------------------------------------------------


def _build_naive(hp: dict[str, Any]) -> Any:
    from sktime.forecasting.naive import NaiveForecaster

    return NaiveForecaster(**hp)


def _extract_naive(fitted: Any) -> dict[str, JsonNumber]:
    with quiet_sktime():
        level = fitted.predict(fh=[1]).iloc[0]
    key = "last" if fitted.strategy == "last" else "level"
    return {key: _number(level)}


NAIVE_FAMILY = Family(
    name="naive",
    hyperparameters={"strategy": "last", "window_length": None, "sp": 1},
    build=_build_naive,
    extract_params=_extract_naive,
    description="sktime NaiveForecaster; default: repeat the last value",
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


FAMILIES: dict[str, Family] = {f.name: f for f in (ARIMA_FAMILY, NAIVE_FAMILY, THETA_FAMILY)}


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

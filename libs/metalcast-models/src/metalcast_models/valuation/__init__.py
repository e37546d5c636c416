"""The gold valuation model: point-in-time macro and gold features, a LightGBM candidate with
time-series CV and a grid search, the EMA-30 fallback, and its evaluation against naive and
ARIMA on daily gold (docs/valuation.md). Importing this package does not import LightGBM."""

from metalcast_models.valuation.evaluate import (
    ValuationConfig,
    ValuationResult,
    evaluate,
    gbm_backtest,
    gold_series,
)
from metalcast_models.valuation.features import (
    GOLD_FEATURES,
    PointInTime,
    gold_features,
    known_values,
    point_in_time_features,
)
from metalcast_models.valuation.model import (
    ARTIFACT_NAME,
    DEFAULT_GRID,
    FAMILY,
    SYMBOL,
    GridSearch,
    ValuationFit,
    expanding_splits,
    fit_valuation,
    grid_search,
    load_booster,
)

__all__ = [
    "ARTIFACT_NAME",
    "DEFAULT_GRID",
    "FAMILY",
    "GOLD_FEATURES",
    "SYMBOL",
    "GridSearch",
    "PointInTime",
    "ValuationConfig",
    "ValuationFit",
    "ValuationResult",
    "evaluate",
    "expanding_splits",
    "fit_valuation",
    "gbm_backtest",
    "gold_features",
    "gold_series",
    "grid_search",
    "known_values",
    "load_booster",
    "point_in_time_features",
]

"""The data scientists' ``Model``: one forecaster per ticker, trained on the last hours.

    model = Model(["XAUUSD", "XAGUSD", "XPTUSD", "XPDUSD"], x_size=12, y_size=1)
    model.train()                         # ml.metal_prices_training, last x_size hours
    model.train(use_generated_data=True)  # the generator (integrated AR(1))
    model.save("model1")                  # model1/XAUUSD.zip, ...

``train`` never raises because of the data: each ticker gets a :class:`FitResult`, ok or
failed with a reason (see :mod:`metalcast_models.fitting` for the gap policy).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from metalcast_models.artifacts import SavedArtifact, save_forecaster
from metalcast_models.data import GeneratedData, PostgresTrainingData, TrainingData
from metalcast_models.families import get_family
from metalcast_models.fitting import FitResult, fit_frame
from metalcast_models.forecast import predict_with_intervals

log = logging.getLogger(__name__)

MIN_X_SIZE = 3


class Model:
    def __init__(
        self,
        tickers: Sequence[str],
        x_size: int,
        y_size: int,
        family: str = "arima",
        params: Mapping[str, Any] | None = None,
        data_source: TrainingData | None = None,
    ) -> None:
        tickers = list(tickers)
        if not tickers:
            raise ValueError("at least one ticker is needed")
        if len(set(tickers)) != len(tickers):
            raise ValueError("tickers must be unique")
        if x_size < MIN_X_SIZE:
            raise ValueError(f"x_size must be >= {MIN_X_SIZE}")
        if y_size < 1:
            raise ValueError("y_size must be >= 1")
        self.tickers = tickers
        self.x_size = x_size
        self.y_size = y_size
        self.family = get_family(family).name
        self.hyperparameters = get_family(family).resolve(params)  # ValueError if unknown
        self.data_source = data_source
        self.results: dict[str, FitResult] = {}

    def __repr__(self) -> str:
        return (
            f"Model({self.tickers!r}, x_size={self.x_size}, y_size={self.y_size}, "
            f"family={self.family!r})"
        )

    def train(self, use_generated_data: bool = False) -> dict[str, FitResult]:
        """Fit one forecaster per ticker; returns (and keeps) each ticker's result."""
        source = GeneratedData() if use_generated_data else self._source()
        frame = source.window(self.tickers, self.x_size)
        self.results = fit_frame(
            frame, self.tickers, self.x_size, self.family, self.hyperparameters
        )
        for ticker, result in self.results.items():
            if result.ok:
                log.info("%s: %s fitted in %.3fs", ticker, self.family, result.fit_seconds)
            else:
                log.warning("%s: not trained: %s", ticker, result.reason)
        return self.results

    def _source(self) -> TrainingData:
        if self.data_source is None:
            from metalcast_core import ServiceSettings

            self.data_source = PostgresTrainingData(ServiceSettings().postgres.url)
        return self.data_source

    @property
    def forecasters(self) -> dict[str, Any]:
        """The fitted forecasters of the tickers that trained."""
        return {t: r.forecaster for t, r in self.results.items() if r.ok}

    @property
    def failed(self) -> dict[str, str]:
        """ticker -> reason, for the tickers that did not train."""
        return {t: r.reason or "unknown" for t, r in self.results.items() if not r.ok}

    def save(self, directory: str | Path) -> list[SavedArtifact]:
        """Write ``<directory>/<ticker>.zip`` for every ticker that trained."""
        if not self.results:
            raise RuntimeError("nothing to save: call train() first")
        return [save_forecaster(f, directory, t) for t, f in self.forecasters.items()]

    def forecast(self, coverage: Sequence[float] = (0.8, 0.95)) -> dict[str, pd.DataFrame]:
        """``y_size`` hours ahead with intervals, for every ticker that trained."""
        return {
            t: predict_with_intervals(f, self.y_size, coverage) for t, f in self.forecasters.items()
        }

"""The volume model: LightGBM on two rolling features of a daily stock series, predicting the
day's trading volume (an integer number of shares).

The booster predicts the *ratio* of the day's volume to its 30-day mean; the volume is
``vol_moving_avg * ratio``. Trained on that ratio (squared error weighted by
``vol_moving_avg``, i.e. the squared error in shares relative to the symbol's level), a
symbol's scale (a few thousand shares a day or a billion) never leaves the range the trees
saw.

Trained by ``metalcast bulk train`` (``metalcast_bulk.train``), served by the API
(``/predict``, ``/v1/volume/predict``). It lives in the registry beside the forecasting
models under the symbol :data:`VOLUME_SYMBOL`. The file is LightGBM's own text format (no
pickle): loading it runs no code from the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

VOLUME_SYMBOL: Final = "VOLUME"
VOLUME_FAMILY: Final = "lightgbm"
FEATURES: Final = ("vol_moving_avg", "adj_close_rolling_med")
ARTIFACT_NAME: Final = "volume.lgb.txt"


def to_volume(value: float) -> int:
    """A prediction as a volume: rounded to a whole number of shares, never below zero."""
    if not math.isfinite(value):
        raise ValueError(f"the model predicted {value}")
    return max(round(value), 0)


@dataclass(frozen=True)
class VolumeModel:
    booster: Any  # lightgbm.Booster

    @classmethod
    def load(cls, path: str | Path) -> VolumeModel:
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(path))
        names = tuple(booster.feature_name())
        if names != FEATURES:
            raise ValueError(f"{path} was trained on {names}, not {FEATURES}")
        return cls(booster)

    def save(self, path: str | Path) -> None:
        self.booster.save_model(str(path))

    def predict_many(self, features: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, Any]:
        """Volumes (not yet rounded) for rows of (vol_moving_avg, adj_close_rolling_med)."""
        ratio = np.asarray(self.booster.predict(features, num_threads=1), dtype=np.float64)
        return np.asarray(features[:, 0] * ratio, dtype=np.float64)

    def predict(self, vol_moving_avg: float, adj_close_rolling_med: float) -> int:
        row = np.array([[vol_moving_avg, adj_close_rolling_med]], dtype=np.float64)
        return to_volume(float(self.predict_many(row)[0]))

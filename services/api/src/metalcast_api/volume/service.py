"""Asking the loaded model: one row, a whole number of shares."""

from __future__ import annotations

from metalcast_api.resources.volume import LoadedVolume


def predict(loaded: LoadedVolume, vol_moving_avg: float, adj_close_rolling_med: float) -> int:
    return loaded.model.predict(vol_moving_avg, adj_close_rolling_med)

"""The trainer's one settings object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from metalcast_core import METALS, ServiceSettings


class TrainerSection(BaseModel):
    group_id: str = "metalcast-trainer"
    # The model family (metalcast_models.FAMILIES: arima, naive, theta) and overrides of its
    # hyperparameters, e.g. METALCAST_TRAINER__HYPERPARAMETERS='{"order": [2, 1, 0]}'.
    family: str = "arima"
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    tickers: list[str] = Field(default_factory=lambda: [m.ticker for m in METALS])
    x_size: int = Field(default=12, ge=3)
    y_size: int = Field(default=1, ge=1)
    # After an event, wait this long for more before training (a burst trains once).
    coalesce_s: float = Field(default=0.2, ge=0)
    work_dir: Path = Path("/tmp/metalcast-trainer")
    models_prefix: str = "models/"


class TrainerSettings(ServiceSettings):
    trainer: TrainerSection = TrainerSection()

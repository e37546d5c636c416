"""The bulk pipeline's one settings object: the shared sections plus ``bulk``
(``METALCAST_BULK__*``, e.g. ``METALCAST_BULK__DATA_URL=s3://metalcast-bulk/market``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from metalcast_bulk.features import WindowRule
from metalcast_bulk.train import TrainConfig
from metalcast_bulk.validate import DEFAULT_MAX_PRICE
from metalcast_core import ServiceSettings


class BulkSection(BaseModel):
    # Where the datasets live: a local folder or s3://bucket/prefix (METALCAST_S3__* reach it).
    data_url: str = ".bulk-data"
    # The input folder the market_data_bulk DAG ingests (the CLI takes it as an argument).
    input_url: str = "market-data"
    # polars (embedded, the default) or spark (needs spark_master).
    engine: Literal["polars", "spark"] = "polars"
    # local[2], or spark://host:7077 for a standalone cluster (`metalcast stack up --with-spark`).
    spark_master: str = "local[2]"
    # Threads of the polars engine (0: the number of cores, at most 4).
    workers: int = Field(default=0, ge=0, le=64)
    batch_files: int = Field(default=400, ge=1)
    # Largest absolute price taken as real; beyond it a row is quarantined as absurd_price.
    max_price: float = Field(default=DEFAULT_MAX_PRICE, gt=0)
    # The feature window: calendar (30 days) or rows (30 rows), and its minimum periods
    # (None: 1 for calendar, the size for rows).
    window: Literal["calendar", "rows"] = "calendar"
    window_size: int = Field(default=30, ge=1)
    min_periods: int | None = Field(default=None, ge=1)
    # Published runs kept per stage (the current one is never deleted).
    keep_runs: int = Field(default=3, ge=1)
    # Training.
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    max_train_rows: int = Field(default=2_000_000, ge=1000)
    num_boost_round: int = Field(default=60, ge=1)
    # LightGBM's threads (1: see metalcast_bulk.train.TrainConfig).
    threads: int = Field(default=1, ge=1)
    models_prefix: str = "models/"
    work_dir: Path = Path(".cache/bulk-train")
    # The bulk work's own S3 identity (metalcast-bulk: its bucket, and adding model files),
    # for a process whose METALCAST_S3__* keys are another's: Airflow's workers run the backup
    # (its key) and this DAG. Set, they replace the S3 section's key pair for everything bulk.
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None

    @field_validator("models_prefix")
    @classmethod
    def _slash(cls, value: str) -> str:
        value = value.strip("/")
        return f"{value}/" if value else ""

    def window_rule(self) -> WindowRule:
        return WindowRule(self.window, self.window_size, self.min_periods)

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            test_fraction=self.test_fraction,
            max_train_rows=self.max_train_rows,
            num_boost_round=self.num_boost_round,
            threads=self.threads,
        )


class BulkSettings(ServiceSettings):
    bulk: BulkSection = BulkSection()

    @model_validator(mode="after")
    def _bulk_identity(self) -> BulkSettings:
        """``bulk.s3_access_key_id`` and ``bulk.s3_secret_access_key`` (both or neither)
        replace ``s3``'s key pair."""
        key, secret = self.bulk.s3_access_key_id, self.bulk.s3_secret_access_key
        if (key is None) != (secret is None):
            raise ValueError(
                "METALCAST_BULK__S3_ACCESS_KEY_ID and METALCAST_BULK__S3_SECRET_ACCESS_KEY "
                "go together: set both or neither"
            )
        if key is not None and secret is not None:
            self.s3 = self.s3.model_copy(update={"access_key_id": key, "secret_access_key": secret})
        return self

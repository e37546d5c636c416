"""The API's one settings object: the shared sections plus ``api`` (``METALCAST_API__*``)."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field, SecretStr, model_validator

from metalcast_core import ServiceSettings

PLACEHOLDER_KEYS = frozenset({"", "changethis", "changeme", "password", "secret"})


class ApiSection(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Needed for POST /v1/models/{symbol}/rollback and /unpin (header X-API-Key). The
    # placeholder is accepted locally and refused when environment=production.
    api_key: SecretStr = SecretStr("changethis")
    max_horizon_h: int = Field(default=168, ge=1, le=24 * 366)
    # Daily instruments (stocks, ETFs) forecast at most this many days ahead, unless their
    # catalogue entry says otherwise (model.horizon).
    max_horizon_days: int = Field(default=366, ge=1, le=3660)
    # Longest range /history and /analytics answer in one response.
    max_range_days: int = Field(default=400, ge=1, le=36_600)
    # Empty: CORS off (the dashboard is served by the API itself).
    cors_origins: list[str] = Field(default_factory=list)
    # How long a presigned model-file URL is valid.
    presign_ttl_s: int = Field(default=300, ge=1, le=7 * 24 * 3600)
    # Seconds between checks of the production pointers that preload newly promoted models.
    pointer_check_s: float = Field(default=30.0, gt=0)
    # Forecasts read the production pointers and the newest observation hour at most this
    # often (0: on every request). A rollback or unpin through this API, models.trained.v1
    # and models.production.v1 events clear it at once; without Kafka, other API processes
    # see a move within pointer_ttl_s.
    pointer_ttl_s: float = Field(default=1.0, ge=0)
    # Longest wait for Kafka to take a models.production.v1 event after a rollback or unpin
    # (the change is done either way; the answer says whether it was published).
    publish_timeout_s: float = Field(default=5.0, gt=0)
    # /v1/prices/latest reads the database at most this often (0: on every request).
    latest_cache_s: float = Field(default=1.0, ge=0)
    # Events buffered per SSE client before the oldest are dropped.
    stream_buffer: int = Field(default=256, ge=1)
    # Seconds each /readyz check may take.
    ready_timeout_s: float = Field(default=2.0, gt=0)
    access_log: bool = False
    # The volume model's production pointer is read at most this often (a
    # models.production.v1 event for VOLUME reads it at once).
    volume_pointer_ttl_s: float = Field(default=2.0, ge=0)


class ApiSettings(ServiceSettings):
    api: ApiSection = ApiSection()

    @model_validator(mode="after")
    def _refuse_placeholder_api_key(self) -> Self:
        if self.environment == "production":
            key = self.api.api_key.get_secret_value()
            if key.strip().lower() in PLACEHOLDER_KEYS or len(key) < 16:
                raise ValueError(
                    "METALCAST_API__API_KEY is a placeholder or shorter than 16 characters; "
                    "set a real key in production"
                )
        return self

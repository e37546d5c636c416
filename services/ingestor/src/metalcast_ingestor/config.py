"""The ingestor's one settings object."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr

from metalcast_core import METAL_SYMBOLS, ServiceSettings


class IngestSection(BaseModel):
    # Providers polled in schedule mode, by registry name (see sources/registry.py).
    sources: list[str] = Field(default_factory=lambda: ["gold-api"])
    symbols: list[str] = Field(default_factory=lambda: list(METAL_SYMBOLS))
    interval_s: float = Field(default=3600.0, gt=0)
    # Poll on the boundary of the interval (the top of the hour for 3600 s).
    align: bool = True
    http_timeout_s: float = Field(default=20.0, gt=0)
    max_attempts: int = Field(default=4, ge=1)
    # The least time between two calls to the same provider.
    min_interval_s: float = Field(default=1.0, ge=0)
    chunk_size: int = Field(default=20_000, ge=1)
    simulated_seed: int = 42
    # Keys: only the ones for the providers in use are needed.
    gold_api_key: SecretStr | None = None
    metalpriceapi_key: SecretStr | None = None
    metals_api_key: SecretStr | None = None
    goldapi_io_key: SecretStr | None = None
    coingecko_key: SecretStr | None = None
    # Schedule mode serves GET /metrics and /healthz (metalcast_ingestor.observe) on this
    # address; port 0: none. /healthz fails when no poll finished for interval_s +
    # stall_after_s, or when every source failed its last poll.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9103, ge=0, le=65535)
    stall_after_s: float = Field(default=300.0, gt=0)
    alphavantage_key: SecretStr | None = None
    # Where the instrument catalogue comes from: the database (ref.instruments), falling
    # back to the file when the database cannot be reached; or the file only.
    catalogue: Literal["database", "file"] = "database"
    catalogue_file: Path | None = None  # default: infra/instruments.toml
    # Per-provider request counts per UTC day (`metalcast ingest --budget`).
    budget_file: Path = Path.home() / ".cache" / "metalcast" / "request-budget.json"
    # Requests a day each provider allows (Alpha Vantage's free plan: 25).
    daily_requests: dict[str, int] = Field(default_factory=lambda: {"alphavantage": 25})
    # `metalcast ingest bars --schedule` (metalcast_ingestor.daily_bars): every day at this
    # UTC time (after the 16:00 New York close), the catalogued equities and ETFs not fetched
    # since the latest weekday close, within the day's budget less bars_reserve requests.
    bars_at: time = time(22, 30)
    bars_reserve: int = Field(default=0, ge=0)
    # symbol -> when its bars were last fetched (default: bars-ledger.json beside budget_file).
    bars_ledger_file: Path | None = None
    # Provider name -> another base URL (a proxy, a recorded-answer server in the tests).
    base_urls: dict[str, str] = Field(default_factory=dict)
    # FRED (`metalcast ingest macro`, docs/macro.md): the key (METALCAST_INGEST__FRED_API_KEY).
    fred_api_key: SecretStr | None = None
    # FRED's address (https://api.stlouisfed.org when unset): a mirror or a proxy.
    fred_base_url: str | None = None
    # The series pulled; empty: the rows of macro.series (the built-in five when the database
    # cannot be read).
    macro_series: list[str] = Field(default_factory=list)
    # A daily pull asks for every vintage of the observations dated this many days back (a
    # backfill, `--full`, asks for all of them): revisions of these series land within weeks.
    macro_recent_days: int = Field(default=120, ge=1)
    # `metalcast ingest macro --schedule` pulls at start and then every day at this UTC time
    # (FRED posts the H.15 rates around 16:15 US Eastern, 21:15 UTC; the dollar index weekly).
    macro_daily_at: time = time(22, 30)
    # The least time between two FRED requests: it allows 120 a minute per key.
    fred_min_interval_s: float = Field(default=0.5, ge=0)


class IngestorSettings(ServiceSettings):
    connects_to: ClassVar[frozenset[str]] = frozenset({"kafka"})

    ingest: IngestSection = IngestSection()

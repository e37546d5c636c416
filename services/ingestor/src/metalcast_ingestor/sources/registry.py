"""Source names to source classes: the one place a configured name becomes a PriceSource.

Keys and paths are passed in (the ingestor's settings read them from the environment);
nothing here reads ``os.environ``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import httpx

from metalcast_ingestor.sources._budget import RequestBudget
from metalcast_ingestor.sources._http import HttpSource, RetryPolicy
from metalcast_ingestor.sources.alphavantage import AlphaVantageSource
from metalcast_ingestor.sources.base import PriceSource
from metalcast_ingestor.sources.coingecko import CoinGeckoSource
from metalcast_ingestor.sources.gold_api import GoldApiSource
from metalcast_ingestor.sources.goldapi_io import GoldApiIoSource
from metalcast_ingestor.sources.metalpriceapi import MetalpriceApiSource
from metalcast_ingestor.sources.metals_api import MetalsApiSource
from metalcast_ingestor.sources.replay import ReplaySource
from metalcast_ingestor.sources.simulated import DEFAULT_CHUNK_SIZE, SimulatedSource

# The field of the ingestor's settings section holding each provider's key.
KEY_FIELDS: dict[str, str] = {
    "gold-api": "gold_api_key",
    "metalpriceapi": "metalpriceapi_key",
    "metals-api": "metals_api_key",
    "goldapi-io": "goldapi_io_key",
    "coingecko": "coingecko_key",
    "alphavantage": "alphavantage_key",
}

# Least seconds between two requests, by provider and whether a key is set: within the free
# plans' rate limits (CoinGecko keyless ~5-15 calls a minute, Demo 30; Alpha Vantage 5).
PACING_S: dict[str, tuple[float, float]] = {  # provider -> (keyless, with a key)
    "coingecko": (6.0, 2.0),
    "alphavantage": (12.0, 12.0),
}


class IngestSettingsLike(Protocol):
    """What :meth:`SourceParams.from_settings` reads (the ingestor's ``ingest`` section).

    Keys are read by the names in :data:`KEY_FIELDS`, as ``SecretStr``, ``str`` or ``None``.
    """

    @property
    def max_attempts(self) -> int: ...

    @property
    def min_interval_s(self) -> float: ...

    @property
    def chunk_size(self) -> int: ...

    @property
    def simulated_seed(self) -> int: ...


def _reveal(value: object) -> str | None:
    if value is None:
        return None
    reveal = getattr(value, "get_secret_value", None)
    text = reveal() if callable(reveal) else value
    return text if isinstance(text, str) and text.strip() else None


@dataclass(frozen=True, slots=True)
class SourceParams:
    """What a source may need besides the HTTP client. Unused fields are ignored."""

    api_keys: Mapping[str, str] = field(default_factory=dict)  # source name -> key
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    base_urls: Mapping[str, str] = field(default_factory=dict)  # source name -> URL override
    seed: int = 42  # simulated
    chunk_size: int = DEFAULT_CHUNK_SIZE  # simulated and replay
    replay_path: Path | None = None  # replay: required
    replay_source_name: str = "replay"
    # From the instrument catalogue: provider -> {our symbol: the provider's id}, and
    # symbol -> currency. A provider without an entry keeps its built-in ids.
    provider_ids: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    currencies: Mapping[str, str] = field(default_factory=dict)
    budget: RequestBudget | None = None  # daily request budgets (Alpha Vantage)
    pace: bool = True  # apply PACING_S (tests on recorded answers turn it off)

    @classmethod
    def from_settings(cls, section: IngestSettingsLike, **overrides: Any) -> SourceParams:
        """Params from the ingestor's settings section; ``overrides`` replace fields."""
        keys = {
            name: key
            for name, attr in KEY_FIELDS.items()
            if (key := _reveal(getattr(section, attr, None))) is not None
        }
        values: dict[str, Any] = {
            "api_keys": keys,
            "retry": RetryPolicy(
                attempts=section.max_attempts, min_interval=section.min_interval_s
            ),
            "seed": section.simulated_seed,
            "chunk_size": section.chunk_size,
        }
        values.update(overrides)
        return cls(**values)

    def __repr__(self) -> str:  # never shows a key
        return (
            f"SourceParams(api_keys={sorted(self.api_keys)}, base_urls={dict(self.base_urls)}, "
            f"seed={self.seed}, chunk_size={self.chunk_size}, replay_path={self.replay_path})"
        )


class UnknownSource(ValueError):
    """The configured source name is not one of :data:`SOURCE_NAMES`."""


def _simulated(client: httpx.AsyncClient, p: SourceParams) -> PriceSource:
    return SimulatedSource(seed=p.seed, chunk_size=p.chunk_size)


def _replay(client: httpx.AsyncClient, p: SourceParams) -> PriceSource:
    if p.replay_path is None:
        raise ValueError("the replay source needs a file (replay_path)")
    return ReplaySource(p.replay_path, source_name=p.replay_source_name, chunk_size=p.chunk_size)


def _retry_for(name: str, p: SourceParams) -> RetryPolicy:
    if not p.pace or name not in PACING_S:
        return p.retry
    keyless, keyed = PACING_S[name]
    least = keyed if p.api_keys.get(name) else keyless
    return replace(p.retry, min_interval=max(p.retry.min_interval, least))


def _codes(cls: type[HttpSource], p: SourceParams) -> Mapping[str, str] | None:
    if not getattr(cls, "catalogue_driven", False):
        return None
    ids = p.provider_ids.get(cls.name)
    return dict(ids) if ids else None


def _http(cls: type[HttpSource]) -> Callable[[httpx.AsyncClient, SourceParams], PriceSource]:
    def build(client: httpx.AsyncClient, p: SourceParams) -> PriceSource:
        codes = _codes(cls, p)
        extra: dict[str, Any] = {} if codes is None else {"codes": codes}
        return cls(
            client,
            p.api_keys.get(cls.name),
            _retry_for(cls.name, p),
            base_url=p.base_urls.get(cls.name),
            **extra,
        )

    return build


def _alphavantage(client: httpx.AsyncClient, p: SourceParams) -> PriceSource:
    return AlphaVantageSource(
        client,
        p.api_keys.get(AlphaVantageSource.name),
        _retry_for(AlphaVantageSource.name, p),
        base_url=p.base_urls.get(AlphaVantageSource.name),
        codes=_codes(AlphaVantageSource, p),
        currencies=p.currencies,
        budget=p.budget,
    )


_BUILDERS: dict[str, Callable[[httpx.AsyncClient, SourceParams], PriceSource]] = {
    "simulated": _simulated,
    "replay": _replay,
    "gold-api": _http(GoldApiSource),
    "metalpriceapi": _http(MetalpriceApiSource),
    "metals-api": _http(MetalsApiSource),
    "goldapi-io": _http(GoldApiIoSource),
    "coingecko": _http(CoinGeckoSource),
    "alphavantage": _alphavantage,
}

SOURCE_NAMES: tuple[str, ...] = tuple(_BUILDERS)
NEEDS_API_KEY: frozenset[str] = frozenset(
    {"metalpriceapi", "metals-api", "goldapi-io", "alphavantage"}
)


def build_source(
    name: str, client: httpx.AsyncClient, params: SourceParams | None = None
) -> PriceSource:
    """The source called ``name``, built with ``client`` (owned and closed by the caller).

    Raises :class:`UnknownSource` for an unknown name and ``ValueError`` when a required
    parameter (an API key, a replay file) is missing.
    """
    builder = _BUILDERS.get(name.strip().lower())
    if builder is None:
        raise UnknownSource(f"unknown price source {name!r}; known: {', '.join(SOURCE_NAMES)}")
    return builder(client, params or SourceParams())

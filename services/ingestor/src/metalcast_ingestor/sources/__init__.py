"""Price sources: the interface, the providers and the name → source registry."""

from metalcast_ingestor.sources._budget import BudgetExhausted, BudgetStatus, RequestBudget
from metalcast_ingestor.sources._http import (
    HttpSource,
    ProviderHTTPError,
    RetryPolicy,
    parse_retry_after,
)
from metalcast_ingestor.sources.alphavantage import AlphaVantageSource, Throttled
from metalcast_ingestor.sources.base import (
    BarFetched,
    Fetched,
    HistoryNotSupported,
    PriceSource,
    Rejected,
    SourceError,
    SourceUnavailable,
    make_bar,
    make_tick,
)
from metalcast_ingestor.sources.coingecko import CoinGeckoSource
from metalcast_ingestor.sources.fred import FredKeyRejected, FredSource, SeriesChunk
from metalcast_ingestor.sources.gold_api import GoldApiSource
from metalcast_ingestor.sources.goldapi_io import GoldApiIoSource
from metalcast_ingestor.sources.metalpriceapi import MetalpriceApiSource
from metalcast_ingestor.sources.metals_api import MetalsApiSource
from metalcast_ingestor.sources.registry import (
    KEY_FIELDS,
    NEEDS_API_KEY,
    SOURCE_NAMES,
    SourceParams,
    UnknownSource,
    build_source,
)
from metalcast_ingestor.sources.replay import ReplaySource
from metalcast_ingestor.sources.simulated import SimulatedSource

__all__ = [
    "KEY_FIELDS",
    "NEEDS_API_KEY",
    "SOURCE_NAMES",
    "AlphaVantageSource",
    "BarFetched",
    "BudgetExhausted",
    "BudgetStatus",
    "CoinGeckoSource",
    "Fetched",
    "FredKeyRejected",
    "FredSource",
    "GoldApiIoSource",
    "GoldApiSource",
    "HistoryNotSupported",
    "HttpSource",
    "MetalpriceApiSource",
    "MetalsApiSource",
    "PriceSource",
    "ProviderHTTPError",
    "Rejected",
    "ReplaySource",
    "RequestBudget",
    "RetryPolicy",
    "SeriesChunk",
    "SimulatedSource",
    "SourceError",
    "SourceParams",
    "SourceUnavailable",
    "Throttled",
    "UnknownSource",
    "build_source",
    "make_bar",
    "make_tick",
    "parse_retry_after",
]

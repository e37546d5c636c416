"""The name -> source registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel, SecretStr

from metalcast_ingestor.sources import (
    SOURCE_NAMES,
    CoinGeckoSource,
    GoldApiIoSource,
    GoldApiSource,
    MetalpriceApiSource,
    MetalsApiSource,
    ReplaySource,
    RetryPolicy,
    SimulatedSource,
    SourceParams,
    UnknownSource,
    build_source,
)
from tests.unit.ingestor.ingestor_kit import Routes

ClientFor = Callable[[Routes], httpx.AsyncClient]

KEYS = {"metalpriceapi": "k1", "metals-api": "k2", "goldapi-io": "k3"}


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("simulated", SimulatedSource),
        ("gold-api", GoldApiSource),
        ("metalpriceapi", MetalpriceApiSource),
        ("metals-api", MetalsApiSource),
        ("goldapi-io", GoldApiIoSource),
        ("coingecko", CoinGeckoSource),
        ("replay", ReplaySource),
    ],
)
async def test_every_name_builds_its_class(
    client_for: ClientFor, tmp_path: Path, name: str, cls: type
) -> None:
    params = SourceParams(api_keys=KEYS, replay_path=tmp_path / "x.csv")
    source = build_source(name, client_for(Routes({})), params)
    assert isinstance(source, cls)
    assert source.name == name


def test_known_names() -> None:
    assert SOURCE_NAMES == (
        "simulated",
        "replay",
        "gold-api",
        "metalpriceapi",
        "metals-api",
        "goldapi-io",
        "coingecko",
        "alphavantage",
    )


async def test_unknown_name_lists_the_known_ones(client_for: ClientFor) -> None:
    with pytest.raises(UnknownSource, match="unknown price source 'yahoo'; known: simulated, "):
        build_source("yahoo", client_for(Routes({})))


@pytest.mark.parametrize("name", ["metalpriceapi", "metals-api", "goldapi-io"])
async def test_keyed_providers_refuse_to_build_without_a_key(
    client_for: ClientFor, name: str
) -> None:
    with pytest.raises(ValueError, match="needs an API key"):
        build_source(name, client_for(Routes({})))


async def test_replay_needs_a_file(client_for: ClientFor) -> None:
    with pytest.raises(ValueError, match="replay_path"):
        build_source("replay", client_for(Routes({})))


class _Section(BaseModel):
    max_attempts: int = 5
    min_interval_s: float = 0.25
    chunk_size: int = 500
    simulated_seed: int = 123
    gold_api_key: SecretStr | None = None
    metalpriceapi_key: SecretStr | None = SecretStr("mp-secret")
    metals_api_key: SecretStr | None = None
    goldapi_io_key: SecretStr | None = SecretStr("  ")  # blank counts as none
    coingecko_key: SecretStr | None = None


async def test_params_from_settings(client_for: ClientFor) -> None:
    params = SourceParams.from_settings(_Section())
    assert params.api_keys == {"metalpriceapi": "mp-secret"}
    assert params.retry.attempts == 5
    assert params.retry.min_interval == 0.25
    assert params.seed == 123
    assert params.chunk_size == 500
    assert "mp-secret" not in repr(params)
    source = build_source("metalpriceapi", client_for(Routes({})), params)
    assert "mp-secret" not in repr(source)
    simulated = build_source("simulated", client_for(Routes({})), params)
    assert isinstance(simulated, SimulatedSource)
    assert (simulated.seed, simulated.chunk_size) == (123, 500)


async def test_base_url_override(client_for: ClientFor) -> None:
    routes = Routes({"/proxy/price/XAU": "gold-api/price_XAU.json"})
    params = SourceParams(
        base_urls={"gold-api": "http://proxy.test/proxy/"}, retry=RetryPolicy(min_interval=0)
    )
    source = build_source("gold-api", client_for(routes), params)
    await source.latest(["XAU"])
    assert str(routes.requests[0].url) == "http://proxy.test/proxy/price/XAU"

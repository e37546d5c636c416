"""The ingestor and the instrument catalogue: which coins CoinGecko is asked for (every
catalogued one, a coin added later from the next poll on), which ids, and the budget door."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from metalcast_core import Catalogue, PriceTick, parse_catalogue
from metalcast_ingestor.bootstrap import per_source_symbols
from metalcast_ingestor.cli import make_app
from metalcast_ingestor.config import IngestorSettings, IngestSection
from metalcast_ingestor.runner import poll_once
from metalcast_ingestor.sources import (
    CoinGeckoSource,
    GoldApiSource,
    PriceSource,
    RequestBudget,
    RetryPolicy,
)
from tests.unit.ingestor.ingestor_kit import Routes

ClientFor = Callable[[Routes], httpx.AsyncClient]
COINS = """
[[instrument]]
symbol = "BTC"
kind = "crypto"
providers = { coingecko = "bitcoin" }
[[instrument]]
symbol = "XAU"
kind = "metal"
providers = { gold-api = "XAU" }
"""


class Collecting:
    """Stands in for the publisher: keeps what it is handed."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    async def publish(self, items: Any) -> Any:
        from metalcast_ingestor.publisher import PublishStats

        self.items += list(items)
        return PublishStats(published=len(self.items))


def _answer(request: httpx.Request) -> httpx.Response:
    ids = request.url.params["ids"].split(",")
    return httpx.Response(
        200, json={i: {"usd": 100.0 + n, "last_updated_at": 1735826690} for n, i in enumerate(ids)}
    )


async def test_every_catalogued_coin_is_polled_and_a_new_one_from_the_next_poll(
    client_for: ClientFor, policy: RetryPolicy
) -> None:
    routes = Routes({"/api/v3/simple/price": _answer, "/price/XAU": "gold-api/price_XAU.json"})
    client = client_for(routes)
    sources: list[PriceSource] = [
        CoinGeckoSource(client, retry=policy),
        GoldApiSource(client, retry=policy),
    ]
    catalogue = Catalogue(parse_catalogue(COINS))
    wanted = per_source_symbols(sources, catalogue, None)
    assert wanted == {"coingecko": ["BTC"]}  # the metal sources keep the metals' list
    out = Collecting()
    report = await poll_once(sources, ["XAU"], out, per_source=wanted)  # type: ignore[arg-type]
    assert not report.failures
    assert sorted(t.symbol for t in out.items if isinstance(t, PriceTick)) == ["BTC", "XAU"]
    assert routes.requests[0].url.params["ids"] == "bitcoin"

    catalogue.replace(
        parse_catalogue(
            COINS + '[[instrument]]\nsymbol = "SOL"\nkind = "crypto"\n'
            'providers = { coingecko = "solana" }\n'
        )
    )
    wanted = per_source_symbols(sources, catalogue, None)
    assert wanted == {"coingecko": ["BTC", "SOL"]}
    await poll_once(sources, ["XAU"], Collecting(), per_source=wanted)  # type: ignore[arg-type]
    asked = [r for r in routes.requests if r.url.path == "/api/v3/simple/price"][-1]
    assert asked.url.params["ids"] == "bitcoin,solana"
    # --symbols narrows the catalogue's coins.
    assert per_source_symbols(sources, catalogue, ["SOL", "XAU"]) == {"coingecko": ["SOL"]}


def test_budget_door_prints_what_is_used_and_left(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    budget = RequestBudget(path, {"alphavantage": 25})
    for _ in range(3):
        budget.take("alphavantage")

    def settings() -> IngestorSettings:
        return IngestorSettings(ingest=IngestSection(budget_file=path))

    result = CliRunner().invoke(make_app(settings), ["--budget"])
    assert result.exit_code == 0, result.output
    day = json.loads(path.read_text())["alphavantage"]["day"]
    assert result.output.strip() == (f"alphavantage: 3 of 25 requests used on {day} (UTC), 22 left")

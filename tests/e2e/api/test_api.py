"""Every endpoint of the API against data made by the real ingest, sink and trainer paths."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from metalcast_api.app import create_app
from metalcast_core import METAL_SYMBOLS, PriceTick
from metalcast_models.backtest import INTERVAL_METHOD
from tests.e2e.api.conftest import API_KEY, HISTORY_HOURS, World, api_settings, isolated
from tests.support import publisher

pytestmark = pytest.mark.e2e
HOUR = timedelta(hours=1)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"ready": True, "checks": {"database": "ok", "s3": "ok", "kafka": "ok"}}


async def test_latest_prices_per_symbol_with_age_and_source(
    client: httpx.AsyncClient, world: World
) -> None:
    body = (await client.get("/v1/prices/latest")).json()
    assert [p["symbol"] for p in body] == list(METAL_SYMBOLS)
    newest = await world.fetch(
        "SELECT DISTINCT ON (symbol) symbol, price::float8 AS price, observed_at FROM prices.ticks "
        "ORDER BY symbol, observed_at DESC"
    )
    expected = {r["symbol"]: r for r in newest}
    for p in body:
        assert p["source"] == "simulated"
        assert p["price"] == pytest.approx(expected[p["symbol"]]["price"])
        assert _ts(p["observed_at"]) == expected[p["symbol"]]["observed_at"]
        age = (datetime.now(UTC) - _ts(p["observed_at"])).total_seconds()
        assert abs(p["age_seconds"] - age) < 30
    assert body[0]["name"] == "Gold"


async def test_history_is_hourly_between_two_instants(
    client: httpx.AsyncClient, world: World
) -> None:
    start, end = world.start + 10 * HOUR, world.start + 34 * HOUR
    r = await client.get(
        "/v1/prices/XAG/history", params={"from": start.isoformat(), "to": end.isoformat()}
    )
    assert r.status_code == 200, r.text
    points = r.json()["points"]
    assert [_ts(p["ts"]) for p in points] == [start + h * HOUR for h in range(24)]
    rows = await world.fetch(
        "SELECT xag::float8 AS v FROM analytics.metal_prices WHERE ts >= $1 AND ts < $2 "
        "ORDER BY ts",
        start,
        end,
    )
    assert [p["price"] for p in points] == pytest.approx([r["v"] for r in rows])
    # Lower-case symbols work; the default range is the last 7 days.
    default = (await client.get("/v1/prices/xag/history")).json()
    assert len(default["points"]) == HISTORY_HOURS


async def test_analytics_rows_and_training_window(client: httpx.AsyncClient, world: World) -> None:
    r = await client.get(
        "/v1/prices/analytics",
        params={"from": world.start.isoformat(), "to": world.end.isoformat()},
    )
    rows = r.json()["rows"]
    assert len(rows) == HISTORY_HOURS
    assert set(rows[0]) == {"ts", "xau", "xag", "xpt", "xpd"}
    window = (await client.get("/v1/prices/training-window")).json()
    assert window["size"] == 12
    assert window["rows"] == rows[-12:]
    assert _ts(window["last"]) == world.end - HOUR


async def test_models_production_versions_and_training_runs(
    client: httpx.AsyncClient, world: World
) -> None:
    production = (await client.get("/v1/models/production")).json()
    assert [m["symbol"] for m in production] == sorted(METAL_SYMBOLS)
    for m in production:
        assert m["version"] == 2
        assert m["candidate"] in {"arima", "naive"}
        assert m["family"] == m["candidate"]
        assert m["promoted_by"] in {"trainer", "api"}  # "api": another test rolled back
        assert m["in_production"]
        assert m["ever_production"]
        assert not m["pinned"]
        assert m["pinned_at"] is m["pinned_by"] is m["pin_reason"] is None

    versions = (await client.get("/v1/models/XAU/versions")).json()
    assert [v["version"] for v in versions] == [2, 1]
    v2, v1 = versions
    assert (v1["family"], v1["candidate"]) == ("arima", "arima")
    assert v1["decision"].startswith("first model: arima MASE")
    assert v2["hyperparameters"]
    assert v2["fitted_params"]
    assert v2["metrics"]
    assert _ts(v2["window_end"]) == world.end - HOUR
    assert _ts(v1["window_end"]) == world.end - 2 * HOUR
    one = (await client.get("/v1/models/XAU/versions/1")).json()
    assert one == v1
    assert (await client.get("/v1/models/XAU/production")).json()["version"] == 2

    runs = (await client.get("/v1/models/training-runs", params={"limit": 5})).json()
    assert len(runs) == 2
    second, first = runs
    assert first["status"] == second["status"] == "succeeded"
    assert first["error"] is None
    assert first["family"] == "arima"
    assert second["family"] == "arima,naive"
    assert [c["name"] for c in second["candidates"]] == ["arima", "naive"]
    assert sorted(x["symbol"] for x in first["results"]) == sorted(METAL_SYMBOLS)
    for x in first["results"]:
        assert (x["status"], x["version"], x["decision"]["action"]) == ("promoted", 1, "first")
        assert x["window_hours"] == 12
    for x in second["results"]:
        assert (x["status"], x["version"]) == ("promoted", 2)
        assert x["decision"]["action"] in {"refit", "promote", "keep"}
        assert set(x["decision"]["mase"]) == {"arima", "naive"}
        assert _ts(x["window_end"]) == world.end - HOUR
    failed = (await client.get("/v1/models/training-runs", params={"status": "failed"})).json()
    assert failed == []
    none = (await client.get("/v1/models/training-runs", params={"status": "unchanged"})).json()
    assert none == []


async def test_model_file_download_streamed_and_presigned(
    client: httpx.AsyncClient, world: World
) -> None:
    version = (await client.get("/v1/models/XPT/versions/2")).json()
    r = await client.get("/v1/models/XPT/versions/2/artifact")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    assert hashlib.sha256(r.content).hexdigest() == version["sha256"] == r.headers["x-sha256"]
    signed = (await client.get("/v1/models/XPT/versions/2/artifact-url")).json()
    assert signed["sha256"] == version["sha256"]
    async with httpx.AsyncClient(timeout=30) as plain:
        direct = await plain.get(signed["url"])
    assert direct.status_code == 200
    assert direct.content == r.content


async def test_forecast_for_a_horizon(client: httpx.AsyncClient, world: World) -> None:
    r = await client.get("/v1/forecasts/XAU", params={"horizon": 24})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["version"] == 2
    cutoff = _ts(body["cutoff"])
    assert cutoff == world.end - HOUR == _ts(body["model"]["window_end"])
    assert _ts(body["last_observation"]) == cutoff
    assert body["stale_hours"] == 0
    assert [_ts(s["ts"]) for s in body["steps"]] == [cutoff + k * HOUR for k in range(1, 25)]
    assert body["interval_method"] == INTERVAL_METHOD  # v2 has a calibration
    assert set(body["interval_coverage"]) == {"80", "95"}
    for s in body["steps"]:
        assert s["lower_95"] <= s["lower_80"] <= s["point"] <= s["upper_80"] <= s["upper_95"]
        assert all(math.isfinite(s[k]) for k in s if k != "ts")
    again = (await client.get("/v1/forecasts/XAU", params={"horizon": 3})).json()
    assert again["cached"] is True
    assert again["steps"] == body["steps"][:3]


async def test_forecast_until_returns_every_hourly_step(
    client: httpx.AsyncClient, world: World
) -> None:
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=30, minutes=17)
    r = await client.get("/v1/forecasts/XPD", params={"until": until.isoformat()})
    assert r.status_code == 200, r.text
    body = r.json()
    cutoff = _ts(body["cutoff"])
    stamps = [_ts(s["ts"]) for s in body["steps"]]
    assert stamps[0] == cutoff + HOUR
    assert all(b - a == HOUR for a, b in itertools.pairwise(stamps))
    assert stamps[-1] >= until > stamps[-2]  # the target is covered, nothing beyond it
    assert body["horizon"] == len(stamps)
    assert _ts(body["until"]) == until
    # A naive instant is UTC.
    naive = until.replace(tzinfo=None).isoformat()
    same = (await client.get("/v1/forecasts/XPD", params={"until": naive})).json()
    assert same["steps"] == body["steps"]


@pytest.mark.parametrize(
    ("path", "params", "status", "words"),
    [
        ("/v1/forecasts/XYZ", {"horizon": 3}, 404, "known symbols: XAU, XAG, XPT, XPD"),
        ("/v1/prices/BTC/history", {}, 404, "unknown symbol 'BTC'"),
        ("/v1/models/FOO/versions", {}, 404, "known symbols"),
        ("/v1/models/XAU/versions/99", {}, 404, "no version 99"),
        ("/v1/forecasts/XAU", {}, 422, "either `horizon`"),
        ("/v1/forecasts/XAU", {"horizon": 2, "until": "2100-01-01T00:00:00Z"}, 422, "not both"),
        ("/v1/forecasts/XAU", {"until": "2001-01-01T00:00:00Z"}, 422, "in the past"),
        ("/v1/forecasts/XAU", {"horizon": 169}, 422, "beyond the maximum of 168"),
        ("/v1/forecasts/XAU", {"horizon": 0}, 422, "greater than or equal to 1"),
        ("/v1/forecasts/XAU", {"until": "2199-01-01T00:00:00Z"}, 422, "the maximum is 168"),
        ("/v1/forecasts/XAU", {"until": "tomorrow"}, 422, "ISO-8601"),
        ("/v1/prices/analytics", {"to": "0"}, 422, "ISO-8601"),
        ("/v1/forecasts/XAU", {"until": "9999-12-31T23:59:59"}, 422, "between 1970 and 2200"),
        ("/v1/prices/XAU/history", {"from": "2026-13-01"}, 422, "datetime"),
        ("/v1/prices/XAU/history", {"from": "2026-01-02", "to": "2026-01-01"}, 422, "before"),
        ("/v1/prices/analytics", {"from": "1990-01-01", "to": "2020-01-01"}, 422, "400 days"),
        ("/v1/stream/ticks", {"symbols": "NOPE"}, 422, "unknown symbol(s) NOPE"),
    ],
)
async def test_bad_input_answers_4xx_with_a_reason(
    client: httpx.AsyncClient, path: str, params: dict[str, object], status: int, words: str
) -> None:
    r = await client.get(path, params=params)  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    assert words in json.dumps(r.json()).replace("\\u2019", "'"), r.text


async def test_no_model_yet_answers_409_and_404(stack: object) -> None:
    from tests.support import ServerThread

    async with isolated(stack) as (pg, kafka, s3):
        with ServerThread(create_app(api_settings(pg, kafka, s3))) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
                r = await c.get("/v1/forecasts/XAG", params={"horizon": 5})
                assert r.status_code == 409
                assert "no production model for XAG yet" in r.json()["detail"]
                r = await c.get("/v1/models/XAG/production")
                assert r.status_code == 404
                assert "no production model" in r.json()["detail"]
                assert (await c.get("/v1/models/production")).json() == []
                assert (await c.get("/v1/prices/latest")).json() == []
                assert (await c.get("/v1/prices/training-window")).json()["size"] == 0
                assert (await c.get("/v1/ops/backups")).json() == []
                r = await c.post("/v1/models/XAG/rollback", headers={"X-API-Key": API_KEY}, json={})
                assert r.status_code == 409
                assert "no model versions" in r.json()["detail"]
                r = await c.post("/v1/models/XAG/unpin", headers={"X-API-Key": API_KEY})
                assert r.status_code == 409
                assert r.json()["detail"] == "unpin refused: XAG has no production version"
                r = await c.get("/v1/models/XAG/backtest")
                assert r.status_code == 404
                assert "no backtest of XAG yet" in r.json()["detail"]
                assert (await c.get("/v1/models/XAG/history")).json() == []


async def test_rollback_needs_the_key_and_changes_what_the_forecast_uses(
    client: httpx.AsyncClient,
) -> None:
    before = (await client.get("/v1/forecasts/XAG", params={"horizon": 6})).json()
    assert before["model"]["version"] == 2
    v1 = (await client.get("/v1/models/XAG/versions/1")).json()

    r = await client.post("/v1/models/XAG/rollback", json={"to_version": 1})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "APIKey"
    r = await client.post(
        "/v1/models/XAG/rollback", json={"to_version": 1}, headers={"X-API-Key": "wrong"}
    )
    assert r.status_code == 403
    r = await client.post(
        "/v1/models/XAG/rollback", json={"to_version": 7}, headers={"X-API-Key": API_KEY}
    )
    assert r.status_code == 409
    assert "no version 7" in r.json()["detail"]

    try:
        r = await client.post(
            "/v1/models/XAG/rollback", json={"to_version": 1}, headers={"X-API-Key": API_KEY}
        )
        assert r.status_code == 200, r.text
        move = r.json()
        assert (move["from_version"], move["to_version"], move["action"]) == (2, 1, "rollback")
        assert (move["pinned"], move["published"]) == (True, True)
        assert move["reason"] == "rollback to v1"  # none given
        after = (await client.get("/v1/forecasts/XAG", params={"horizon": 6})).json()
        assert after["model"]["version"] == 1
        assert after["model"]["family"] == v1["family"]
        assert [s["point"] for s in after["steps"]] != [s["point"] for s in before["steps"]]
        assert (await client.get("/v1/models/XAG/production")).json()["version"] == 1
    finally:
        r = await client.post(
            "/v1/models/XAG/rollback", json={"to_version": 2}, headers={"X-API-Key": API_KEY}
        )
        assert r.status_code == 200, r.text
        r = await client.post("/v1/models/XAG/unpin", headers={"X-API-Key": API_KEY})
        assert r.status_code == 200, r.text
    restored = (await client.get("/v1/forecasts/XAG", params={"horizon": 6})).json()
    assert restored["steps"] == before["steps"]


async def _sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, object]]]:
    event = "message"
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield event, json.loads(line.removeprefix("data: "))
            event = "message"


async def test_stream_relays_ticks_as_server_sent_events(world: World) -> None:
    async def publish_until_seen(seen: asyncio.Event) -> None:
        async with publisher(world.kafka, list(METAL_SYMBOLS)) as pub:
            while not seen.is_set():
                now = datetime.now(UTC).replace(microsecond=0)
                tick = PriceTick(symbol="XPT", source="stream-test", observed_at=now, price=987.5)
                await pub.publish([tick])
                await asyncio.sleep(0.5)

    seen = asyncio.Event()
    async with (
        httpx.AsyncClient(base_url=world.url, timeout=httpx.Timeout(30, read=30)) as c,
        c.stream("GET", "/v1/stream/ticks", params={"symbols": ["XPT", "XAU"]}) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _sse_events(r)
        name, hello = await anext(events)
        assert name == "hello"
        assert hello == {"symbols": ["XAU", "XPT"]}
        task = asyncio.create_task(publish_until_seen(seen))
        try:
            async with asyncio.timeout(30):
                async for name, data in events:
                    if name == "tick" and data["source"] == "stream-test":
                        assert data["symbol"] == "XPT"
                        assert data["price"] == 987.5
                        seen.set()
                        break
        finally:
            seen.set()
            await task


async def test_metrics_in_prometheus_format(client: httpx.AsyncClient) -> None:
    await client.get("/v1/forecasts/XAU", params={"horizon": 2})
    await client.get("/v1/prices/latest")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    forecasts = 'method="GET",route="/v1/forecasts/{symbol}",status="200"'
    assert f"metalcast_api_requests_total{{{forecasts}}}" in text
    latest = 'le="0.05",method="GET",route="/v1/prices/latest"'
    assert f"metalcast_api_request_duration_seconds_bucket{{{latest}}}" in text
    assert 'metalcast_api_forecast_cache_hits_total{symbol="XAU"}' in text
    assert 'metalcast_api_data_age_seconds{symbol="XAU"}' in text
    assert "metalcast_api_stream_clients" in text


async def test_freshness_and_backups(client: httpx.AsyncClient, world: World) -> None:
    fresh = {f["symbol"]: f for f in (await client.get("/v1/ops/freshness")).json()}
    assert _ts(fresh["XAU"]["last_hour"]) == world.end - HOUR
    assert fresh["XAU"]["tick_age_seconds"] is not None
    assert fresh["BTC"]["last_tick"] is None
    assert (await client.get("/v1/ops/backups")).json() == []


async def test_openapi_is_complete_with_examples(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert "/v1/forecasts/{symbol}" in paths
    assert "/v1/stream/ticks" in paths
    for path, ops in paths.items():
        for method, op in ops.items():
            assert op.get("summary"), f"{method} {path} has no summary"
    schemas = spec["components"]["schemas"]
    for name in (
        "ForecastRead",
        "LatestPriceRead",
        "VersionRead",
        "ProductionRead",
        "TrainingRunRead",
        "BacktestRead",
        "PointerEventRead",
        "PointerMoveRead",
        "ReadyRead",
    ):
        assert schemas[name].get("examples"), f"{name} has no example"
    forecast = schemas["ForecastRead"]["properties"]
    for name in ("interval_method", "interval_coverage"):
        assert forecast[name].get("examples"), f"ForecastRead.{name} has no example"
        assert forecast[name].get("description")
    for path in ("/v1/models/{symbol}/backtest", "/v1/models/{symbol}/history"):
        assert "get" in paths[path]
    assert "post" in paths["/v1/models/{symbol}/unpin"]

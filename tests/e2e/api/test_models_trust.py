"""Models you can trust, through the API: every version's backtest and calibration, every
candidate's backtest, calibrated forecast intervals, pins and the pointer's history, and
``models.production.v1`` (published by the API, followed by it, relayed to the stream)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest

from metalcast_api.resources.forecasts import COLUMNS, UNCALIBRATED, calibrate, load_model
from metalcast_core import PRODUCTION_CHANGED, ProductionChanged, make_s3_client
from metalcast_models import registry
from metalcast_models.backtest import INTERVAL_METHOD
from tests.e2e.api.conftest import API_KEY, World
from tests.support import produce_raw, read_all

pytestmark = pytest.mark.e2e
KEY = {"X-API-Key": API_KEY}
HOUR = timedelta(hours=1)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _js(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def _runs(world: World) -> list[int]:
    return [r["id"] for r in await world.fetch("SELECT id FROM ml.training_runs ORDER BY id")]


async def test_a_version_carries_its_backtest_calibration_and_decision(
    client: httpx.AsyncClient, world: World
) -> None:
    first_run, second_run = await _runs(world)
    v2 = (await client.get("/v1/models/XAU/versions/2")).json()
    stored = (
        await world.fetch(
            "SELECT * FROM ml.model_versions WHERE symbol = 'XAU' AND version = 2",
        )
    )[0]
    assert v2["run_id"] == second_run
    assert v2["candidate"] == stored["candidate"] in {"arima", "naive"}
    assert v2["candidate_key"] == stored["candidate_key"]
    assert v2["window_hash"] == stored["window_hash"]
    assert v2["window_hours"] == 12  # twelve consecutive hours, both ends counted
    assert v2["n_observations"] == 12
    assert v2["deleted_at"] is None
    assert v2["ever_production"]
    assert v2["backtest"] == _js(stored["backtest"])
    assert v2["calibration"] == _js(stored["calibration"])
    reason = (
        await world.fetch(
            "SELECT reason FROM ml.training_results WHERE run_id = $1 AND symbol = 'XAU'",
            second_run,
        )
    )[0]["reason"]
    assert v2["decision"] == reason
    # The backtest is the chosen configuration's in the run that made the version.
    row = await world.fetch(
        "SELECT result FROM ml.backtests WHERE run_id = $1 AND symbol = 'XAU' "
        "AND candidate_key = $2",
        second_run,
        v2["candidate_key"],
    )
    assert v2["backtest"] == _js(row[0]["result"])
    bt = v2["backtest"]
    assert bt["candidate"]["key"] == v2["candidate_key"]
    assert bt["origins"] >= 50
    assert len(bt["steps"]) == 24
    for key in ("mase", "mae_ratio", "coverage_80", "coverage_95"):
        assert isinstance(bt["summary"][key], float), key
    cal = v2["calibration"]
    assert cal["method"] == INTERVAL_METHOD
    assert len(cal["q80"]) == len(cal["q95"]) == cal["steps"] == 24
    assert cal["scale"] > 0
    assert (cal["coverage_80"], cal["coverage_95"]) == (
        bt["summary"]["coverage_80"],
        bt["summary"]["coverage_95"],
    )
    # The list and the production view carry the same fields.
    listed = (await client.get("/v1/models/XAU/versions")).json()
    assert listed[0] == v2
    production = (await client.get("/v1/models/XAU/production")).json()
    assert {k: production[k] for k in v2} == v2
    v1 = (await client.get("/v1/models/XAU/versions/1")).json()
    assert v1["run_id"] == first_run
    assert v1["backtest"]["candidate"]["name"] == "arima"


async def test_backtest_shows_every_candidate_with_production_marked(
    client: httpx.AsyncClient, world: World
) -> None:
    first_run, second_run = await _runs(world)
    production = (await client.get("/v1/models/XPD/production")).json()
    r = await client.get("/v1/models/xpd/backtest")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["symbol"], body["run_id"], body["run_status"]) == ("XPD", second_run, "succeeded")
    assert (body["result"], body["version"]) == ("promoted", 2)
    assert body["decision"]["action"] in {"refit", "promote", "keep"}
    assert body["decision"]["chosen"] == production["candidate"]
    assert body["window_hours"] == 12
    assert _ts(body["window_end"]) == world.end - HOUR
    assert body["production"] == {
        "version": 2,
        "candidate": production["candidate"],
        "candidate_key": production["candidate_key"],
        "pinned": False,
    }
    assert body["interval_method"] == INTERVAL_METHOD
    names = [c["name"] for c in body["candidates"]]
    assert sorted(names) == ["arima", "naive"]
    mases = [c["summary"]["mase"] for c in body["candidates"]]
    assert mases == sorted(mases)  # best first
    marked = [c for c in body["candidates"] if c["in_production"]]
    assert [c["candidate_key"] for c in marked] == [production["candidate_key"]]
    by_name = {c["name"]: c for c in body["candidates"]}
    assert by_name["naive"]["summary"]["mae_ratio"] == pytest.approx(1.0)  # naive vs itself
    assert body["decision"]["mase"] == {n: c["summary"]["mase"] for n, c in by_name.items()}
    stored = {
        r["candidate"]: _js(r["result"])
        for r in await world.fetch(
            "SELECT candidate, result FROM ml.backtests WHERE run_id = $1 AND symbol = 'XPD'",
            second_run,
        )
    }
    for name, c in by_name.items():
        assert c["summary"] == stored[name]["summary"]
        assert c["steps"] == stored[name]["steps"]
        assert c["calibration"] == stored[name]["calibration"]
        assert c["origins"] == stored[name]["origins"]
        assert _ts(c["last_origin"]) == _ts(stored[name]["last_origin"])
        assert c["hyperparameters"] == stored[name]["candidate"]["hyperparameters"]
        assert 0 <= c["summary"]["coverage_80"] <= c["summary"]["coverage_95"] <= 1

    older = (await client.get("/v1/models/XPD/backtest", params={"run_id": first_run})).json()
    assert older["run_id"] == first_run
    assert (older["result"], older["version"]) == ("promoted", 1)
    assert older["decision"]["action"] == "first"
    assert [c["name"] for c in older["candidates"]] == ["arima"]
    r = await client.get("/v1/models/XPD/backtest", params={"run_id": 999_999})
    assert r.status_code == 404
    assert r.json()["detail"] == "run 999999 has no backtest of XPD"


async def test_forecast_intervals_are_the_calibrated_ones(
    client: httpx.AsyncClient, world: World
) -> None:
    version = (await client.get("/v1/models/XAU/production")).json()
    cal = version["calibration"]
    horizon = 30  # past the 24 calibrated steps: the last q widens with sqrt(h / 24)
    body = (await client.get("/v1/forecasts/XAU", params={"horizon": horizon})).json()
    assert body["model"]["version"] == version["version"]
    assert body["model"]["candidate"] == version["candidate"]
    assert body["interval_method"] == INTERVAL_METHOD == cal["method"]
    assert body["interval_coverage"] == {"80": cal["coverage_80"], "95": cal["coverage_95"]}
    scale = cal["scale"]
    for h, step in enumerate(body["steps"], start=1):
        for level in ("80", "95"):
            qs = cal[f"q{level}"]
            q = qs[h - 1] if h <= len(qs) else qs[-1] * math.sqrt(h / len(qs))
            half = q * scale
            assert step[f"upper_{level}"] - step["point"] == pytest.approx(half, rel=1e-9), h
            assert step["point"] - step[f"lower_{level}"] == pytest.approx(half, rel=1e-9), h

    # The same version without a calibration (as versions made before backtests) keeps the
    # model's own intervals around the same points, and says so.
    conn = await asyncpg.connect(world.pg.url)
    try:
        info = await registry.get_version(conn, "XAU", version["version"])
    finally:
        await conn.close()
    assert info is not None
    s3 = make_s3_client(world.s3)
    plain = await asyncio.to_thread(
        load_model, s3, dataclasses.replace(info, calibration={}), horizon
    )
    assert plain.interval_method == UNCALIBRATED == "model (uncalibrated)"
    assert plain.interval_coverage is None
    assert [s.point for s in plain.steps] == pytest.approx([s["point"] for s in body["steps"]])
    for s in plain.steps:
        assert s.lower_95 <= s.lower_80 <= s.point <= s.upper_80 <= s.upper_95
    assert [s.upper_80 for s in plain.steps] != pytest.approx(
        [s["upper_80"] for s in body["steps"]]
    )


async def test_unpin_needs_the_key_and_a_pin(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/models/XPD/unpin")
    assert r.status_code == 401
    r = await client.post("/v1/models/XPD/unpin", headers={"X-API-Key": "wrong"})
    assert r.status_code == 403
    r = await client.post("/v1/models/XPD/unpin", headers=KEY, json={"reason": "x"})
    assert r.status_code == 409
    assert r.json()["detail"] == "unpin refused: XPD is not pinned"
    r = await client.post("/v1/models/XPD/unpin", headers=KEY, json={"reason": "x" * 501})
    assert r.status_code == 422
    r = await client.post("/v1/models/XPD/unpin", headers=KEY, json={"who": "me"})
    assert r.status_code == 422


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    event = "message"
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield event, json.loads(line.removeprefix("data: "))
            event = "message"


async def _next(events: AsyncIterator[tuple[str, dict[str, Any]]], name: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        async for event, data in events:
            if event == name:
                return data
    raise AssertionError(f"the stream ended before a {name} event")


@contextlib.asynccontextmanager
async def _stream(world: World, symbol: str) -> AsyncIterator[Any]:
    async with (
        httpx.AsyncClient(base_url=world.url, timeout=httpx.Timeout(30, read=30)) as c,
        c.stream("GET", "/v1/stream/ticks", params={"symbols": [symbol]}) as r,
    ):
        assert r.status_code == 200
        events = _events(r)
        assert (await anext(events))[0] == "hello"
        yield events


async def test_rollback_pins_unpin_hands_back_and_history_has_every_change(
    client: httpx.AsyncClient, world: World
) -> None:
    reason = "v2 overshoots after the CPI print"
    async with _stream(world, "XPT") as events:
        r = await client.post(
            "/v1/models/XPT/rollback", headers=KEY, json={"to_version": 1, "reason": reason}
        )
        assert r.status_code == 200, r.text
        move = r.json()
        assert move["symbol"] == "XPT"
        assert (move["action"], move["from_version"], move["to_version"]) == ("rollback", 2, 1)
        assert (move["pinned"], move["reason"], move["changed_by"]) == (True, reason, "api")
        assert move["published"] is True
        # The API's own event comes back through Kafka to the stream.
        seen = await _next(events, "production")
        fields = ("symbol", "action", "from_version", "to_version", "pinned", "changed_by")
        assert {k: seen[k] for k in fields} == {k: move[k] for k in fields}
        assert seen["reason"] == reason
        assert _ts(seen["changed_at"]) == _ts(move["changed_at"])

        production = (await client.get("/v1/models/XPT/production")).json()
        assert (production["version"], production["pinned"]) == (1, True)
        assert (production["pinned_by"], production["pin_reason"]) == ("api", reason)
        assert _ts(production["pinned_at"]) == _ts(move["changed_at"])
        assert (await client.get("/v1/forecasts/XPT", params={"horizon": 2})).json()["model"][
            "version"
        ] == 1
        backtest = (await client.get("/v1/models/XPT/backtest")).json()
        assert backtest["production"]["pinned"] is True
        assert backtest["production"]["version"] == 1

        again = await client.post("/v1/models/XPT/rollback", headers=KEY, json={"to_version": 1})
        assert again.status_code == 409
        assert "already in production, pinned" in again.json()["detail"]

        r = await client.post("/v1/models/XPT/unpin", headers=KEY, json={"reason": "fixed"})
        assert r.status_code == 200, r.text
        unpinned = r.json()
        assert (unpinned["action"], unpinned["from_version"], unpinned["to_version"]) == (
            "unpin",
            1,
            1,
        )
        assert (unpinned["pinned"], unpinned["reason"], unpinned["published"]) == (
            False,
            "fixed",
            True,
        )
        assert (await _next(events, "production"))["action"] == "unpin"
        production = (await client.get("/v1/models/XPT/production")).json()
        assert (production["version"], production["pinned"], production["pinned_by"]) == (
            1,
            False,
            None,
        )

    # Back to v2 for the other tests: a rollback (pinned) and an unpin without a reason.
    r = await client.post("/v1/models/XPT/rollback", headers=KEY, json={"to_version": 2})
    assert r.status_code == 200, r.text
    r = await client.post("/v1/models/XPT/unpin", headers=KEY)
    assert r.status_code == 200, r.text
    assert r.json()["reason"] == "unpinned: champion/challenger decides again"

    history = (await client.get("/v1/models/XPT/history")).json()
    assert [
        (h["action"], h["from_version"], h["to_version"], h["pinned"], h["changed_by"])
        for h in history
    ] == [
        ("unpin", 2, 2, False, "api"),
        ("rollback", 1, 2, True, "api"),
        ("unpin", 1, 1, False, "api"),
        ("rollback", 2, 1, True, "api"),
        ("promote", 1, 2, False, "trainer"),
        ("promote", None, 1, False, "trainer"),
    ]
    assert [h["reason"] for h in history[:4]] == [
        "unpinned: champion/challenger decides again",
        "rollback to v2",
        "fixed",
        reason,
    ]
    assert history[-1]["reason"].startswith("run ")
    stamps = [_ts(h["changed_at"]) for h in history]
    assert stamps == sorted(stamps, reverse=True)
    assert len((await client.get("/v1/models/XPT/history", params={"limit": 2})).json()) == 2

    # Every change is on models.production.v1, in order (the trainer's promotions first).
    published = await read_all(world.kafka, PRODUCTION_CHANGED)
    changes = [PRODUCTION_CHANGED.decode(m) for m in published]
    xpt = [e for e in changes if e.symbol == "XPT"]
    mine = [(e.action, e.from_version, e.to_version, e.pinned) for e in xpt]
    assert mine == [
        (h["action"], h["from_version"], h["to_version"], h["pinned"]) for h in reversed(history)
    ]


async def test_the_api_follows_production_events_from_elsewhere(
    client: httpx.AsyncClient, world: World
) -> None:
    """A change made elsewhere (the CLI, another API process) reaches this API's stream."""
    event = ProductionChanged(
        symbol="XAG",
        action="unpin",
        from_version=2,
        to_version=2,
        pinned=False,
        changed_by="elsewhere",
        reason="a test's event",
        changed_at=datetime.now(UTC).replace(microsecond=0),
    )
    async with _stream(world, "XAG") as events:
        value = PRODUCTION_CHANGED.encode(event)
        await produce_raw(world.kafka, PRODUCTION_CHANGED, [(b"XAG", value)])
        seen = await _next(events, "production")
    assert seen["changed_by"] == "elsewhere"
    assert (seen["symbol"], seen["action"], seen["to_version"]) == ("XAG", "unpin", 2)
    assert _ts(seen["changed_at"]) == event.changed_at
    forecast = (await client.get("/v1/forecasts/XAG", params={"horizon": 1})).json()
    assert forecast["model"]["version"] == 2


async def test_an_unusable_calibration_falls_back_to_the_models_intervals(world: World) -> None:
    conn = await asyncpg.connect(world.pg.url)
    try:
        info = await registry.get_version(conn, "XAU", 2)
    finally:
        await conn.close()
    assert info is not None
    columns = {c: np.array([10.0, 11.0]) for c in COLUMNS}
    columns["lower_80"] = np.array([9.0, 9.5])
    cal = info.calibration
    # No scale; no 95% quantiles; a scale that is no number; bounds that overflow.
    for broken in (
        {"q80": [1.0]},
        {**cal, "q95": []},
        {**cal, "scale": "x"},
        {**cal, "scale": 1e308},
    ):
        out, method, coverage = calibrate(dataclasses.replace(info, calibration=broken), columns)
        assert (method, coverage) == (UNCALIBRATED, None)
        assert out["lower_80"].tolist() == [9.0, 9.5]
    out, method, coverage = calibrate(info, columns)
    assert method == INTERVAL_METHOD
    assert coverage == {"80": cal["coverage_80"], "95": cal["coverage_95"]}
    half = cal["q80"][0] * cal["scale"]
    assert out["upper_80"][0] == pytest.approx(10.0 + half)
    assert out["point"].tolist() == [10.0, 11.0]

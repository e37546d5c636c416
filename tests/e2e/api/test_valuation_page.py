"""The gold valuation page in headless Chromium: after a valuation run on seeded data (macro
vintages and daily gold), the page draws actual vs fitted, the residual and the walk-forward
forecasts with every point the API gives, lists the top features and the backtest of naive,
ARIMA and LightGBM with the API's figures, and a screenshot is saved for people to see."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from metalcast_api import ApiSection, ApiSettings
from metalcast_api.app import create_app
from metalcast_core import KafkaSettings, PostgresSettings, S3Settings, create_pool, make_s3_client
from metalcast_trainer.config import TrainerSection, TrainerSettings
from metalcast_trainer.valuation import ValuationTrainer
from tests.e2e.api.test_dashboard import ARTIFACTS, _run
from tests.support import ServerThread
from tests.valuation_data import seed_database

pytestmark = pytest.mark.e2e
SCREENSHOT = ARTIFACTS / "valuation.png"
VALUATION = {
    "x_size": 30,
    "backtest_origins": 60,
    "refit_every": 20,
    "cv_folds": 3,
    "min_train": 200,
    "grid": {"num_leaves": [7], "learning_rate": [0.1], "n_estimators": [40]},
}


def _js(value: float, digits: int) -> str:
    """``toLocaleString("en-US", {maximumFractionDigits: digits})``."""
    out = f"{value:,.{digits}f}"
    return out.rstrip("0").rstrip(".") if "." in out else out


async def test_the_valuation_page_renders_the_apis_numbers_in_chromium(
    pg_settings: PostgresSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    await seed_database(pg_settings)
    section = TrainerSection.model_validate({"work_dir": tmp_path, "valuation": VALUATION})
    settings = TrainerSettings(
        postgres=pg_settings, kafka=kafka_settings, s3=s3_settings, trainer=section
    )
    pool = await create_pool(pg_settings)
    try:
        valuation = ValuationTrainer(settings, pool, make_s3_client(s3_settings))
        report = await valuation.run("manual")
        assert report.status == "succeeded", report.error
    finally:
        await pool.close()

    app = create_app(
        ApiSettings(
            environment="test",
            postgres=pg_settings,
            kafka=kafka_settings,
            s3=s3_settings,
            api=ApiSection(api_key=SecretStr("test-api-key-0123456789")),
        )
    )
    server = ServerThread(app)
    await asyncio.to_thread(server.__enter__)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as api:
            body = (await api.get("/v1/valuation/gold")).json()
        dom = await asyncio.to_thread(_run, ["--dump-dom", f"{server.url}/valuation"])
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.unlink(missing_ok=True)
        await asyncio.to_thread(_run, [f"--screenshot={SCREENSHOT}", f"{server.url}/valuation"])
    finally:
        await asyncio.to_thread(server.__exit__, None, None, None)

    assert 'data-ready="true"' in dom, dom[:2000]
    for chart, expected in (
        ("chart-fitted", len(body["fitted"])),
        ("chart-residual", len(body["fitted"])),
        ("chart-backtest", len(body["backtest_points"])),
    ):
        tag = re.search(rf'<div class="chart" id="{chart}"[^>]*>', dom)
        assert tag, chart
        assert f'data-points="{expected}"' in tag.group(0), tag.group(0)
    assert dom.count("<canvas") >= 3
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())
    assert f"LightGBM v{body['model']['version']}" in text
    assert body["latest"]["valuation"] in text
    for feature in body["top_features"]:
        assert f"{feature['name']} {_js(100 * feature['importance'], 1)}%" in text
    for name in ("naive", "arima", "lightgbm"):
        row = re.search(rf'<tr data-candidate="{name}">(.*?)</tr>', dom)
        assert row, name
        cells = re.findall(r"<td>(.*?)</td>", row.group(1))
        assert cells[1] == _js(body["backtest"][name]["mase"], 4)
    assert "no gold valuation model yet" not in text
    assert SCREENSHOT.is_file()
    assert SCREENSHOT.stat().st_size > 20_000

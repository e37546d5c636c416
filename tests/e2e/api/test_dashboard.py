"""The dashboard in headless Chromium (Debian's ``chromium``): the page loads, every metal's
chart renders with history and forecast data, every metal's production-model panel shows
the API's figures, and a screenshot is saved for people to see."""

from __future__ import annotations

import html
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from metalcast_core import METAL_SYMBOLS
from tests.e2e.api.conftest import HISTORY_HOURS, World

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
SCREENSHOT = ARTIFACTS / "dashboard.png"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1400,1500",
    "--virtual-time-budget=15000",
]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    missing = "Debian's chromium is not installed (scripts/setup.sh installs it)"
    if os.environ.get("CI"):  # CI installs it: its absence is a failure, not a skip
        pytest.fail(missing)
    pytest.skip(missing)


def _run(args: list[str]) -> str:
    with tempfile.TemporaryDirectory(prefix="metalcast-chromium-") as profile:
        done = subprocess.run(
            [_chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_dashboard_renders_charts_with_data_in_chromium(world: World) -> None:
    page = httpx.get(f"{world.url}/", timeout=10)
    assert page.status_code == 200
    assert "uPlot.iife.min.js" in page.text
    assert "cdn" not in page.text.lower()
    assert httpx.get(f"{world.url}/static/vendor/uPlot.iife.min.js").status_code == 200

    # ?live=0: no stream, so virtual time can run out (an open stream keeps the network busy).
    dom = _run(["--dump-dom", f"{world.url}/?live=0"])
    assert 'data-ready="true"' in dom, dom[:2000]
    for symbol in METAL_SYMBOLS:
        chart = re.search(rf'<div class="chart" id="chart-{symbol}"[^>]*>', dom)
        assert chart, f"no chart for {symbol}"
        tag = chart.group(0)
        points = int(re.search(r'data-points="(\d+)"', tag).group(1))  # type: ignore[union-attr]
        steps = int(re.search(r'data-forecast-steps="(\d+)"', tag).group(1))  # type: ignore[union-attr]
        assert points >= HISTORY_HOURS - 1, (symbol, points)
        assert steps == 24, (symbol, steps)
    assert dom.count("<canvas") >= len(METAL_SYMBOLS)  # uPlot draws on a canvas per chart
    assert re.search(r"model: <b>v2</b> (arima|naive) ", dom)
    assert "intervals: calibrated" in dom
    assert "no training runs yet" not in dom
    production = {m["symbol"]: m for m in httpx.get(f"{world.url}/v1/models/production").json()}
    for symbol in METAL_SYMBOLS:
        _check_production_panel(dom, production[symbol])

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    _run([f"--screenshot={SCREENSHOT}", f"{world.url}/?live=0"])
    assert SCREENSHOT.is_file()
    assert SCREENSHOT.stat().st_size > 20_000  # a blank page is a few kB


def _pct(value: float) -> str:
    return f"{math.floor(value * 100 + 0.5)}%"  # JavaScript's Math.round


def _check_production_panel(dom: str, model: dict[str, object]) -> None:
    """The metal's panel: candidate, version, pin, window span, backtest figures."""
    symbol = model["symbol"]
    card = re.search(rf'<article class="metal" id="metal-{symbol}".*?</article>', dom, re.S)
    assert card, f"no card for {symbol}"
    panel = re.search(r'<dl class="trust"[^>]*>.*?</dl>', card.group(0), re.S)
    assert panel, f"no production panel for {symbol}"
    tag = panel.group(0).split(">", 1)[0]
    assert 'data-version="2"' in tag, tag
    assert f'data-candidate="{model["candidate"]}"' in tag, tag
    assert 'data-pinned="false"' in tag, tag
    text = html.unescape(re.sub(r"<[^>]+>", " ", panel.group(0)))
    text = " ".join(text.split())
    summary = model["backtest"]["summary"]  # type: ignore[index]
    window = f"{str(model['window_start'])[:10]} {str(model['window_start'])[11:16]}"
    assert f"v2 {model['candidate']} auto" in text, text
    assert window in text, (window, text)
    assert f"({model['window_hours']} h, {model['n_observations']} values)" in text, text
    assert f"{summary['mase']:.3f} · {summary['mae_ratio']:.2f}\u00d7 naive" in text, text
    assert f"{_pct(summary['coverage_80'])} · {_pct(summary['coverage_95'])}" in text, text


def test_api_docs_render_from_local_files_in_chromium(world: World) -> None:
    """/docs is Swagger UI served by the API itself: no CDN, every endpoint rendered."""
    page = httpx.get(f"{world.url}/docs", timeout=10)
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(
        r"url: '([^']+)'", page.text
    )
    assert assets
    assert not [a for a in assets if a.startswith(("http://", "https://", "//"))], assets
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert httpx.get(f"{world.url}/static/swagger-ui/{asset}").status_code == 200

    dom = _run(["--dump-dom", f"{world.url}/docs"])
    rendered = set(re.findall(r'data-path="([^"]+)"', dom))
    assert "/v1/models/{symbol}/backtest" in rendered, sorted(rendered)[:20]
    assert "/v1/forecasts/{symbol}" in rendered or any("forecast" in p for p in rendered)

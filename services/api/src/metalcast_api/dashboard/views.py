"""The dashboard at ``/``: one HTML page; its script fetches /v1 and follows the stream."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from metalcast_api.deps import ConnDep, SettingsDep
from metalcast_api.errors import not_found
from metalcast_core import KINDS, METALS, fetch_catalogue

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, settings: SettingsDep) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "index.html",
        {"metals": METALS, "max_horizon_h": settings.api.max_horizon_h, "kinds": KINDS},
    )


@router.get("/instruments/{kind}", response_class=HTMLResponse)
async def kind_page(request: Request, kind: str, conn: ConnDep) -> HTMLResponse:
    """One page per instrument kind: each catalogued instrument's price history in its
    cadence, its production model's forecast and the 80%/95% bands."""
    if kind not in KINDS:
        not_found(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    instruments = [i for i in await fetch_catalogue(conn) if i.kind == kind]
    return templates.TemplateResponse(
        request, "kind.html", {"kind": kind, "kinds": KINDS, "instruments": instruments}
    )


@router.get("/valuation", response_class=HTMLResponse)
async def valuation_page(request: Request) -> HTMLResponse:
    """Gold's valuation: its actual price beside the model's fitted and predicted values, the
    residual, the top features and the backtest against naive (/v1/valuation/gold)."""
    return templates.TemplateResponse(request, "valuation.html", {"kinds": KINDS})

"""The composition root: ``create_app(settings)`` builds the app and mounts the feature
routers; its lifespan owns the long-lived resources (``metalcast_api.resources``: the
PostgreSQL pool, the S3 client, the forecast cache, the event hub with the stream's Kafka
consumer, the latest-prices cache and the producer of ``models.production.v1``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from metalcast_api.analytics.views import router as analytics_router
from metalcast_api.bulk.views import router as bulk_router
from metalcast_api.config import ApiSettings
from metalcast_api.dashboard.views import STATIC_DIR
from metalcast_api.dashboard.views import router as dashboard_router
from metalcast_api.forecasts.views import router as forecasts_router
from metalcast_api.instruments.views import router as instruments_router
from metalcast_api.metrics import ApiMetrics, MetricsMiddleware
from metalcast_api.models.views import router as models_router
from metalcast_api.ops.views import router as ops_router
from metalcast_api.prices.views import router as prices_router
from metalcast_api.resources import open_resources
from metalcast_api.stream.views import router as stream_router
from metalcast_api.valuation.views import router as valuation_router
from metalcast_api.volume.views import router as volume_router

DESCRIPTION = """
Precious-metal prices (XAU, XAG, XPT, XPD in USD), the models trained on them, and their
forecasts. JSON under `/v1`; `/healthz`, `/readyz` and `/metrics` for operations; a live
stream of prices as Server-Sent Events; the dashboard at `/`.

Errors answer `{"detail": "<reason>"}`, except 422 (`{"detail": [{"loc", "msg", "type"}]}`).
Rollback and unpin need the API key (`X-API-Key`).
"""

SWAGGER_PREFIX = "/static/swagger-ui"


def _local_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the ``swagger-ui-bundle-v2`` package's files, so the API
    docs work on a machine without internet (FastAPI's default loads them from a CDN)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

    app.mount(SWAGGER_PREFIX, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - docs",
            swagger_js_url=f"{SWAGGER_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_PREFIX}/favicon-32x32.png",
        )


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    metrics = ApiMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings, metrics) as resources:
            app.state.api = resources
            yield

    app = FastAPI(
        title="metalcast API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served below from local files: no CDN
        redoc_url=None,
    )
    _local_docs(app)
    app.include_router(prices_router)
    app.include_router(models_router)
    app.include_router(forecasts_router)
    app.include_router(instruments_router)
    app.include_router(analytics_router)
    app.include_router(stream_router)
    app.include_router(ops_router)
    app.include_router(volume_router)
    app.include_router(bulk_router)
    app.include_router(valuation_router)
    app.include_router(dashboard_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app

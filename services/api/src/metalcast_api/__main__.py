"""``metalcast-api``: serve the API and the dashboard with uvicorn (one worker)."""

from __future__ import annotations

from metalcast_api.config import ApiSettings
from metalcast_core import configure_logging


def serve(settings: ApiSettings) -> None:
    import uvicorn

    from metalcast_api.app import create_app

    configure_logging(settings.log_level)
    host, port = settings.api.host, settings.api.port
    shown = f"[{host}]" if ":" in host else host
    print(f"metalcast API listening on http://{shown}:{port}/  (docs: /docs)", flush=True)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        workers=1,
        log_level=settings.log_level.lower(),
        access_log=settings.api.access_log,
        proxy_headers=True,
    )


def main() -> None:
    serve(ApiSettings())


if __name__ == "__main__":
    main()

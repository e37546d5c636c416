"""The API's front door (``metalcast-api``; ``metalcast api`` mounts the same app): serve the
HTTP API (/v1, /docs, /metrics) and the dashboard (/) with uvicorn, one worker.

:func:`make_app` takes the settings factory, so the umbrella command and tests hand in their
own. It imports nothing heavy until the command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from metalcast_api.config import ApiSettings

SettingsFactory = Callable[[], "ApiSettings"]


def serve(settings: ApiSettings) -> None:
    """Serve ``settings.api.host:port`` until stopped; print the address first."""
    import uvicorn

    from metalcast_api.app import create_app
    from metalcast_core import configure_logging

    configure_logging(settings.log_level)
    host, port = settings.api.host, settings.api.port
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"metalcast API listening on http://{shown}:{port}/  (docs: /docs)")
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        workers=1,
        log_level=settings.log_level.lower(),
        access_log=settings.api.access_log,
        proxy_headers=True,
    )


def make_app(settings_factory: SettingsFactory) -> typer.Typer:
    app = typer.Typer(
        subcommand_metavar="",  # no subcommands: no COMMAND in the usage line
        help="Serve the HTTP API (/v1, /docs, /metrics) and the dashboard (/) with uvicorn.",
    )

    @app.callback(invoke_without_command=True)
    def run(
        host: Annotated[str | None, typer.Option(help="Default: METALCAST_API__HOST.")] = None,
        port: Annotated[
            int | None, typer.Option(min=0, max=65535, help="Default: METALCAST_API__PORT.")
        ] = None,
    ) -> None:
        """Serve until stopped (SIGINT/SIGTERM)."""
        settings = settings_factory()
        if host is not None:
            settings.api.host = host
        if port is not None:
            settings.api.port = port
        serve(settings)

    return app

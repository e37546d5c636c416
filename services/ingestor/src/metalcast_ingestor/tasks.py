"""What Airflow's ``metalcast_macro`` task calls: synchronous, settings from the environment
(``METALCAST_INGEST__FRED_API_KEY``, ``METALCAST_KAFKA__*``, ...).

The DAG file imports this module inside its task function, never at parse time.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from metalcast_ingestor import bootstrap
from metalcast_ingestor.config import IngestorSettings


class MacroPullFailed(RuntimeError):
    """FRED refused some series: what it served was published; the message names the rest."""


def pull_macro(settings: IngestorSettings | None = None, full: bool = False) -> dict[str, Any]:
    """One pull of the macro series (the last ``macro_recent_days``, or everything with
    ``full``); raises :class:`MacroPullFailed` naming each series FRED refused (after
    publishing the others), and FRED's own errors (a refused key) as they are."""
    settings = settings or IngestorSettings()
    bootstrap.configure(settings)
    result = asyncio.run(bootstrap.macro(settings, full=full, show_progress=False))
    summary = {
        "published": result["published"],
        "dead_lettered": result["dead_lettered"],
        "by_series": dict(result["by_symbol"]),
        "series": result["series"],
        "since": str(result["since"]),
        "requests": result["requests"],
    }
    print("metalcast macro pull: " + json.dumps(summary))
    if result["failures"]:
        raise MacroPullFailed("FRED refused: " + "; ".join(result["failures"]))
    return summary

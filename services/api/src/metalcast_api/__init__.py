"""metalcast's HTTP API: prices, models, forecasts, operations, a live stream, a dashboard."""

from metalcast_api.app import create_app
from metalcast_api.config import ApiSection, ApiSettings

__all__ = ["ApiSection", "ApiSettings", "create_app"]

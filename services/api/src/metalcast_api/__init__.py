"""metalcast's HTTP API: prices, models, forecasts, operations, a live stream, a dashboard.

``create_app`` lives in :mod:`metalcast_api.app`; importing this package stays cheap so that
the command line can mount the API's front door without loading FastAPI and the models.
"""

from metalcast_api.config import ApiSection, ApiSettings

__all__ = ["ApiSection", "ApiSettings"]

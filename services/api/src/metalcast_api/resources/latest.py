"""The latest-prices cache: the rows of ``/v1/prices/latest`` kept for ``api.latest_cache_s``.

The query stays with the prices endpoints (``metalcast_api.prices.service.latest``); this is
only where its answer is kept between requests.
"""

from __future__ import annotations

import time

import asyncpg


class LatestCache:
    """The latest rows kept ``ttl_s`` seconds (0: never kept, every request queries)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._rows: list[asyncpg.Record] = []
        self._at = float("-inf")

    def get(self) -> list[asyncpg.Record] | None:
        if self.ttl_s > 0 and time.monotonic() - self._at < self.ttl_s:
            return self._rows
        return None

    def put(self, rows: list[asyncpg.Record]) -> None:
        self._rows, self._at = rows, time.monotonic()

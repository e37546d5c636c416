"""Prometheus metrics: one registry per app (tests build several apps in one process)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


@dataclass
class ApiMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "metalcast_api_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "metalcast_api_request_duration_seconds",
            "Time to answer an HTTP request (streams: until the stream ends)",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter(
            "metalcast_api_forecast_cache_hits",
            "Forecasts answered from a model already in memory",
            ["symbol"],
            registry=r,
        )
        self.cache_misses = Counter(
            "metalcast_api_forecast_cache_misses",
            "Forecasts that had to load the production model from S3 first",
            ["symbol"],
            registry=r,
        )
        self.data_age = Gauge(
            "metalcast_api_data_age_seconds",
            "Age of the newest stored spot USD price per symbol (set when scraped)",
            ["symbol"],
            registry=r,
        )
        self.last_observation = Gauge(
            "metalcast_api_last_observation_timestamp_seconds",
            "Unix time of the newest stored spot USD price per symbol (set when scraped)",
            ["symbol"],
            registry=r,
        )
        self.stream_clients = Gauge(
            "metalcast_api_stream_clients", "Open Server-Sent Events connections", registry=r
        )
        self.stream_events = Counter(
            "metalcast_api_stream_events",
            "Events relayed from Kafka to the stream's clients",
            ["event"],
            registry=r,
        )


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (pure ASGI: cheap)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # The labelled children, looked up once per label set (labels() takes a lock).
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope["method"]
            counter = self._counters.get((method, template, status_code))
            if counter is None:
                counter = self.metrics.requests.labels(method, template, str(status_code))
                self._counters[(method, template, status_code)] = counter
            counter.inc()
            timer = self._timers.get((method, template))
            if timer is None:
                timer = self._timers[(method, template)] = self.metrics.latency.labels(
                    method, template
                )
            timer.observe(elapsed)

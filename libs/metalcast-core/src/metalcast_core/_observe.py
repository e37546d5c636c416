"""A worker's door for operators: ``GET /metrics`` and ``GET /healthz`` on a small HTTP server.

The sink, the trainer and the ingestor have no web framework; this is plain
``asyncio.start_server`` speaking just enough HTTP/1.1 for Prometheus, compose's healthchecks
and the watch (one request per connection, then close).

- ``GET /metrics``: the Prometheus text of the service's own ``CollectorRegistry`` (never the
  process-wide default: tests run several services in one process).
- ``GET /healthz``: 200 and ``{"status": "ok", ...}`` while the service's health function says
  so; 503 and ``{"status": "unhealthy", "reason": "...", ...}`` otherwise.

Each service's composition root starts one with :func:`serve_status` around its loop and stops
it in the same ``finally``; port 0 means no server at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when serving: the watch's Airflow tasks import this library too
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

# A request must arrive whole within this long; its head within this many bytes.
_READ_TIMEOUT_S = 5.0
_MAX_HEAD = 8192
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Health:
    """A service's answer to "are you doing your job?": ``reason`` says why not."""

    ok: bool
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def healthy(cls, **details: Any) -> Health:
        return cls(True, "", details)

    @classmethod
    def unhealthy(cls, reason: str, **details: Any) -> Health:
        return cls(False, reason, details)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok" if self.ok else "unhealthy"}
        if not self.ok:
            out["reason"] = self.reason
        out.update(self.details)
        return out


HealthCheck = Callable[[], Health]


def since(moment: datetime, now: datetime) -> str:
    """``2026-11-30T17:02:11Z (95 s ago)``: for the reasons health checks give."""
    return f"{moment:%Y-%m-%dT%H:%M:%SZ} ({max(0.0, (now - moment).total_seconds()):.0f} s ago)"


class StatusServer:
    """Serves ``/metrics`` from ``registry`` and ``/healthz`` from ``health`` on host:port.

    ``port=0`` binds an ephemeral port (see :attr:`port` after :meth:`start`)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        health: HealthCheck,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._registry = registry
        self._health = health
        self._host = host
        self._wanted_port = port
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.port = port

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self._host, self._wanted_port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._clients):
            task.cancel()
        for task in list(self._clients):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self._server = None

    async def __aenter__(self) -> StatusServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def answer(self, method: str, target: str) -> tuple[int, str, bytes]:
        """Status, content type and body for one request (no I/O: the tests call it)."""
        path = target.split("?", 1)[0]
        if path not in ("/metrics", "/healthz"):
            return 404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"only GET\n"
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        try:
            health = self._health()
        except Exception as exc:  # a broken check is itself unhealthy, never a hang
            log.exception("health check raised")
            health = Health.unhealthy(f"health check failed: {type(exc).__name__}: {exc}")
        body = json.dumps(health.body(), default=str).encode() + b"\n"
        return (200 if health.ok else 503), "application/json", body

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            if len(head) > _MAX_HEAD:
                return
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3:
                status, ctype, body = 400, "text/plain; charset=utf-8", b"bad request\n"
                method = "GET"
            else:
                method = parts[0]
                status, ctype, body = self.answer(method, parts[1])
            writer.write(
                (
                    f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
                    f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
                ).encode()
                + (b"" if method == "HEAD" else body)
            )
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        except ConnectionError:
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._clients.discard(task)


@asynccontextmanager
async def serve_status(
    service: str,
    registry: CollectorRegistry,
    health: HealthCheck,
    host: str,
    port: int,
) -> AsyncIterator[StatusServer | None]:
    """Serve ``/metrics`` and ``/healthz`` for the block's duration; ``port=0``: nothing.

    A port already taken does not stop the service: the error is logged (its healthcheck
    then fails, which says the same thing louder) and the block runs without a server."""
    if port == 0:
        yield None
        return
    server = StatusServer(registry, health, host, port)
    try:
        await server.start()
    except OSError as exc:
        log.error(
            "%s: cannot serve /metrics and /healthz on %s:%d (%s); running without them",
            service,
            host,
            port,
            exc,
        )
        yield None
        return
    log.info("%s: /metrics and /healthz on http://%s:%d", service, host, server.port)
    try:
        yield server
    finally:
        await server.stop()

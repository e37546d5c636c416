"""The workers' status server (metalcast_core._observe): /metrics, /healthz, and its edges.

A real server on an ephemeral loopback port (no other server needed), spoken to with raw
HTTP/1.1 so that what a healthcheck or Prometheus sees is what is checked."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, Counter

from metalcast_core import Health, StatusServer, serve_status, since


async def request(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


async def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    return await request(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def registry_with_counter(value: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("metalcast_test_things", "Things", registry=registry).inc(value)
    return registry


async def test_metrics_are_the_registrys_prometheus_text() -> None:
    async with StatusServer(registry_with_counter(7), Health.healthy) as server:
        status, headers, body = await get(server.port, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    assert "metalcast_test_things_total 7.0" in body.decode()
    assert int(headers["Content-Length"]) == len(body)


async def test_healthz_is_200_with_details_when_healthy_and_503_with_the_reason_when_not() -> None:
    state = {"health": Health.healthy(batches=3)}
    async with StatusServer(CollectorRegistry(), lambda: state["health"]) as server:
        ok = await get(server.port, "/healthz")
        state["health"] = Health.unhealthy("database unavailable since then", batches=3)
        bad = await get(server.port, "/healthz?verbose=1")
    assert ok[0] == 200
    assert json.loads(ok[2]) == {"status": "ok", "batches": 3}
    assert bad[0] == 503
    assert json.loads(bad[2]) == {
        "status": "unhealthy",
        "reason": "database unavailable since then",
        "batches": 3,
    }


async def test_a_health_check_that_raises_is_unhealthy_not_a_hang() -> None:
    def broken() -> Health:
        raise RuntimeError("boom")

    async with StatusServer(CollectorRegistry(), broken) as server:
        status, _, body = await get(server.port, "/healthz")
    assert status == 503
    assert json.loads(body)["reason"] == "health check failed: RuntimeError: boom"


async def test_unknown_paths_methods_and_garbage_get_4xx_and_head_no_body() -> None:
    async with StatusServer(CollectorRegistry(), Health.healthy) as server:
        missing = await get(server.port, "/")
        post = await request(server.port, b"POST /healthz HTTP/1.1\r\n\r\n")
        garbage = await request(server.port, b"hello\r\n\r\n")
        head = await request(server.port, b"HEAD /healthz HTTP/1.1\r\n\r\n")
    assert missing[0] == 404
    assert post[0] == 405
    assert garbage[0] == 400
    assert head[0] == 200
    assert head[2] == b""
    assert int(head[1]["Content-Length"]) > 0


async def test_a_silent_client_does_not_block_others_and_stop_closes_the_port() -> None:
    server = StatusServer(CollectorRegistry(), Health.healthy)
    port = await server.start()
    _, idle = await asyncio.open_connection("127.0.0.1", port)  # sends nothing
    assert (await get(port, "/healthz"))[0] == 200
    await asyncio.wait_for(server.stop(), 5)
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_serve_status_port_zero_serves_nothing() -> None:
    async with serve_status("sink", CollectorRegistry(), Health.healthy, "127.0.0.1", 0) as s:
        assert s is None


async def test_serve_status_on_a_taken_port_logs_and_lets_the_service_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR):
            async with serve_status(
                "sink", CollectorRegistry(), Health.healthy, "127.0.0.1", port
            ) as server:
                assert server is None
    assert f"cannot serve /metrics and /healthz on 127.0.0.1:{port}" in caplog.text


async def test_serve_status_serves_for_the_block_then_stops() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with serve_status("t", registry_with_counter(1), Health.healthy, "127.0.0.1", port) as s:
        assert s is not None
        assert s.port == port
        assert (await get(port, "/metrics"))[0] == 200
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


def test_since_names_the_moment_and_its_age() -> None:
    then = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
    now = datetime(2026, 11, 30, 17, 1, 35, tzinfo=UTC)
    assert since(then, now) == "2026-11-30T17:00:00Z (95 s ago)"


def test_the_library_and_the_watch_import_without_prometheus_client() -> None:
    """Airflow's watch task imports metalcast_core; an Airflow environment installed before
    core needed prometheus_client must still import it (the client is loaded when serving)."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['prometheus_client'] = None; "
        "import metalcast_core, metalcast_watch.observe, metalcast_watch.tasks"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr

"""One provider adapter over a real socket: a local http.server serving recorded answers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from metalcast_core import PriceTick
from metalcast_ingestor.sources import GoldApiSource, RetryPolicy, SourceUnavailable
from tests.unit.ingestor.ingestor_kit import FIXTURES


class _Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path == "/price/XAU":
            body = (FIXTURES / "gold-api" / "price_XAU.json").read_bytes()
            status, kind = 200, "application/json"
        elif self.path == "/price/XAG" and self.hits[self.path] == 1:
            body = (FIXTURES / "common" / "bad_gateway.html").read_bytes()
            status, kind = 502, "text/html"
        elif self.path == "/price/XAG":
            body = (FIXTURES / "gold-api" / "price_XAG.json").read_bytes()
            status, kind = 200, "application/json"
        else:
            body, status, kind = b'{"error":"Symbol not found"}', 404, "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.hits = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


async def test_gold_api_over_a_real_socket(server: str) -> None:
    policy = RetryPolicy(attempts=2, backoff_initial=0.01, jitter=0, min_interval=0)
    async with httpx.AsyncClient(timeout=5) as client:
        source = GoldApiSource(client, retry=policy, base_url=server)
        out = await source.latest(["XAU", "XAG"])
        assert all(isinstance(t, PriceTick) for t in out)
        assert [t.price for t in out if isinstance(t, PriceTick)] == [2651.300049, 29.684999]
        assert _Handler.hits == {"/price/XAU": 1, "/price/XAG": 2}  # the 502 was retried


async def test_connection_refused_is_unavailable() -> None:
    policy = RetryPolicy(attempts=2, backoff_initial=0.01, jitter=0, min_interval=0)
    async with httpx.AsyncClient(timeout=2) as client:
        # port 9 (discard) on loopback: nothing listens there in a test environment
        source = GoldApiSource(client, retry=policy, base_url="http://127.0.0.1:9")
        with pytest.raises(SourceUnavailable, match="ConnectError"):
            await source.latest(["XAU"])

"""Helpers for the price-source tests: recorded answers, a mock transport, a fake clock.

Imported as ``tests.unit.ingestor.ingestor_kit`` (the repo root is on pytest's pythonpath).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "providers"


def recorded(ref: str) -> httpx.Response:
    """``provider/name`` from tests/fixtures/providers as an httpx.Response (see README)."""
    path = FIXTURES / ref
    if path.name.endswith(".response.json"):
        spec = json.loads(path.read_text())
        if "body_file" in spec:
            content = (path.parent / spec["body_file"]).read_bytes()
        else:
            content = json.dumps(spec["body"]).encode()
        return httpx.Response(spec["status"], headers=spec.get("headers", {}), content=content)
    kind = "text/html; charset=utf-8" if path.suffix == ".html" else "application/json"
    return httpx.Response(200, headers={"Content-Type": kind}, content=path.read_bytes())


Answer = str | Exception | Callable[[httpx.Request], httpx.Response]


class Routes:
    """A MockTransport handler: URL path -> answer(s); counts and keeps every request.

    An answer is a fixture reference (``"gold-api/price_XAU.json"``), an exception to raise
    (``httpx.ReadTimeout``) or a callable. A list is answered in turn, its last item repeating.
    """

    def __init__(self, routes: Mapping[str, Answer | Sequence[Answer]]) -> None:
        self.routes = dict(routes)
        self.requests: list[httpx.Request] = []
        self.counts: Counter[str] = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append(request)
        self.counts[path] += 1
        if path not in self.routes:
            return httpx.Response(404, json={"error": f"no route for {path}"})
        answers = self.routes[path]
        if isinstance(answers, str | Exception) or callable(answers):
            answer: Any = answers
        else:
            answer = answers[min(self.counts[path], len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)  # type: ignore[no-any-return]
        return recorded(answer)

    @property
    def total(self) -> int:
        return len(self.requests)


class FakeClock:
    """Injected as RetryPolicy.sleep/clock: records every wait, never really sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now

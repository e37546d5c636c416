"""Fixtures for the price-source tests (helpers live in ingestor_kit.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from metalcast_ingestor.sources import RetryPolicy
from tests.unit.ingestor.ingestor_kit import FakeClock, Routes


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def policy(clock: FakeClock) -> RetryPolicy:
    """3 attempts, backoff 1 s then 2 s (no jitter), no pacing; waits recorded in ``clock``."""
    return RetryPolicy(
        attempts=3,
        backoff_initial=1.0,
        backoff_max=8.0,
        jitter=0.0,
        retry_after_cap=60.0,
        min_interval=0.0,
        sleep=clock.sleep,
        clock=clock.clock,
    )


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[Routes], httpx.AsyncClient]]:
    """Build an AsyncClient on a MockTransport; closed after the test."""
    clients: list[httpx.AsyncClient] = []

    def make(routes: Routes) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.MockTransport(routes))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()

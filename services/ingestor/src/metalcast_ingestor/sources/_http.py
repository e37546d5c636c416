"""HTTP behaviour every provider shares: polite pacing, retries with backoff, error mapping.

What is retried and what is not::

    2xx                          -> returned to the source, which parses it
    429                          -> retried after Retry-After (seconds or HTTP-date, capped),
                                    or after the exponential backoff when there is none
    408, 5xx, timeouts,
    connect/read errors          -> retried after exponential backoff with jitter
    401, 403, 404, other 4xx/3xx -> ProviderHTTPError (a SourceUnavailable) at once
    retries exhausted            -> SourceUnavailable naming the provider and the last failure

Keys never appear in messages or logs: messages name the provider, the status and the URL
*path* (never the query string), and any echo of a key in a body is replaced by ``***``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from metalcast_ingestor.sources.base import (
    Fetched,
    PriceSource,
    Rejected,
    SourceUnavailable,
    make_tick,
)

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try, and how politely.

    ``attempts`` counts every request, the first included. ``sleep`` and ``clock`` are
    injectable so that tests run without waiting (and can record the waits).
    """

    attempts: int = 4
    backoff_initial: float = 1.0  # seconds before the 2nd attempt; doubles each time
    backoff_max: float = 30.0
    jitter: float = 1.0  # up to this many random seconds added to each backoff
    retry_after_cap: float = 120.0  # never wait longer than this for a 429's Retry-After
    min_interval: float = 1.0  # seconds between two requests to the same provider
    sleep: Sleep = field(default=asyncio.sleep, compare=False)
    clock: Clock = field(default=time.monotonic, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        for name in ("backoff_initial", "backoff_max", "jitter", "retry_after_cap", "min_interval"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


class ProviderHTTPError(SourceUnavailable):
    """The provider answered with a status that retrying will not fix (401, 403, 404, ...)."""

    def __init__(self, provider: str, status_code: int, path: str, body: bytes) -> None:
        hint = {
            401: "unauthorised: check the API key",
            403: "forbidden: check the API key and the plan",
            404: "not found",
        }.get(status_code, "not retried")
        excerpt = body[:200].decode("utf-8", "replace").strip()
        super().__init__(
            f"{provider}: HTTP {status_code} on {path} ({hint})"
            + (f": {excerpt}" if excerpt else ""),
            kind=f"http_{status_code}",
        )
        self.provider = provider
        self.status_code = status_code
        self.body = body


class _Retryable(Exception):
    """An answer worth another attempt (internal to this module)."""

    def __init__(
        self, description: str, retry_after: float | None = None, kind: str = "unavailable"
    ) -> None:
        super().__init__(description)
        self.retry_after = retry_after
        self.kind = kind  # the SourceUnavailable's, when the retries run out


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date.

    Returns ``None`` when absent or unreadable; a date in the past gives 0.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now or datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


class HttpFetcher:
    """GETs for one provider: paced, retried, and mapped to the source exceptions."""

    def __init__(
        self,
        provider: str,
        client: httpx.AsyncClient,
        policy: RetryPolicy,
        *,
        secrets: Sequence[str | None] = (),
    ) -> None:
        self.provider = provider
        self._client = client
        self._policy = policy
        self._secrets = [s.encode() for s in secrets if s]
        self._lock = asyncio.Lock()
        self._next_slot: float | None = None
        self._backoff = wait_exponential_jitter(
            multiplier=policy.backoff_initial, max=policy.backoff_max, jitter=policy.jitter
        )
        self.requests = 0  # attempts made, for metrics and tests

    def compute_wait(self, state: RetryCallState) -> float:
        """Retry-After (capped) when the provider sent one, else exponential backoff."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, self._policy.retry_after_cap)
        return float(self._backoff(state))

    async def get(
        self,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """A 2xx response, or :class:`SourceUnavailable` (:class:`ProviderHTTPError`)."""
        path = httpx.URL(url).path
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._policy.attempts),
            wait=self.compute_wait,
            retry=retry_if_exception_type(_Retryable),
            sleep=self._policy.sleep,
            before_sleep=self._log_retry(path),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(url, path, params, headers)
        except _Retryable as exc:
            raise SourceUnavailable(
                f"{self.provider}: gave up on {path} after {self._policy.attempts} "
                f"attempt(s): {exc}",
                kind=exc.kind,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self,
        url: str,
        path: str,
        params: Mapping[str, str | int] | None,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response:
        await self._pace()
        self.requests += 1
        try:
            response = await self._client.get(url, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timeout ({type(exc).__name__})", kind="timeout") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Retryable(
                f"{type(exc).__name__}: {self.scrub_text(str(exc))}", kind="network"
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        if status == 429:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            raise _Retryable("rate limited (HTTP 429)", retry_after=wait, kind="http_429")
        if status == 408 or status >= 500:
            raise _Retryable(f"HTTP {status}", kind=f"http_{status}")
        raise ProviderHTTPError(self.provider, status, path, self.scrub(response.content))

    async def _pace(self) -> None:
        """Keep ``min_interval`` between two requests to this provider."""
        async with self._lock:
            now = self._policy.clock()
            if self._next_slot is not None and self._next_slot > now:
                await self._policy.sleep(self._next_slot - now)
                now = max(now, self._next_slot)
            self._next_slot = now + self._policy.min_interval

    def _log_retry(self, path: str) -> Callable[[RetryCallState], None]:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "%s: %s on %s; attempt %d of %d, retrying in %.1f s",
                self.provider,
                exc,
                path,
                state.attempt_number,
                self._policy.attempts,
                wait,
            )

        return before_sleep

    def scrub(self, body: bytes) -> bytes:
        for secret in self._secrets:
            body = body.replace(secret, b"***")
        return body

    def scrub_text(self, text: str) -> str:
        return self.scrub(text.encode()).decode("utf-8", "replace")

    def decode_json(self, response: httpx.Response) -> Any | Rejected:
        """The JSON body, or a :class:`Rejected` carrying the raw bytes (HTML, garbage)."""
        body = self.scrub(response.content)
        content_type = response.headers.get("content-type", "")
        head = body.lstrip()[:15].lower()
        if "html" in content_type or head.startswith((b"<!doctype", b"<html")):
            return Rejected(
                self.provider,
                f"expected JSON, got an HTML page (HTTP {response.status_code}, "
                f"content-type {content_type or 'none'})",
                body,
            )
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return Rejected(self.provider, f"body is not JSON: {exc}", body)


class HttpSource(PriceSource):
    """A provider reached over HTTP. ``codes`` maps our symbols to the provider's.

    ``required_key`` is set by providers that cannot work without a key: it names the query
    parameter or header that carries it, and building the source without a key fails.
    """

    default_base_url: str
    codes: Mapping[str, str]
    required_key: ClassVar[str | None] = None

    def __init__(
        self,
        client: httpx.AsyncClient,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        *,
        base_url: str | None = None,
        codes: Mapping[str, str] | None = None,
    ) -> None:
        """``codes``: our symbol -> the provider's id, from the instrument catalogue; the
        class's own ``codes`` when not given."""
        if self.required_key and not api_key:
            raise ValueError(f"{self.name} needs an API key ({self.required_key})")
        if codes is not None:
            self.codes = dict(codes)
        self._api_key = api_key or None
        # Problems that stopped part of a history request (a plan's limit, an unknown id):
        # reported with the result, never a crash and never a silent cut.
        self.failures: list[str] = []
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self._http = HttpFetcher(self.name, client, retry or RetryPolicy(), secrets=[api_key])

    @property
    def supported_symbols(self) -> frozenset[str]:
        return frozenset(self.codes)

    @property
    def requests_made(self) -> int:
        return self._http.requests

    def _checked(self, symbols: Sequence[str]) -> list[str]:
        """The requested symbols, or ValueError for one this provider does not offer."""
        unknown = [s for s in symbols if s not in self.codes]
        if unknown:
            raise ValueError(
                f"{self.name} does not offer {', '.join(unknown)}; "
                f"it offers {', '.join(sorted(self.codes))}"
            )
        return list(dict.fromkeys(symbols))

    def _reject(self, reason: str, original: bytes | Any = b"") -> Rejected:
        if not isinstance(original, bytes):
            original = json.dumps(original, default=str).encode()
        return Rejected(self.name, reason, self._http.scrub(original))

    def _tick_from_price(
        self,
        symbol: str,
        body: Any,
        *,
        symbol_field: str,
        observed: Callable[[dict[str, Any]], datetime | str],
    ) -> Fetched:
        """One tick from a single-price answer (gold-api ``/price``, goldapi.io).

        The answer is an object naming its symbol in ``symbol_field`` (if at all), in USD
        unless it says otherwise, with a ``price``; ``observed`` gives the observation time
        from it, or the reason (after ``"{symbol}: "``) why it cannot.
        """
        code = self.codes[symbol]
        if not isinstance(body, dict):
            return self._reject(f"{symbol}: expected a JSON object", body)
        if (problem := error_answer(body)) is not None:
            return self._reject(f"{symbol}: provider error {problem}", body)
        if body.get(symbol_field, code) != code:
            return self._reject(f"{symbol}: answer is for {body.get(symbol_field)!r}", body)
        if body.get("currency", "USD") != "USD":
            return self._reject(f"{symbol}: answer is in {body.get('currency')!r}", body)
        if "price" not in body:
            return self._reject(f"{symbol}: answer has no price", body)
        when = observed(body)
        if isinstance(when, str):
            return self._reject(f"{symbol}: {when}", body)
        return make_tick(
            source=self.name, symbol=symbol, observed_at=when, price=body["price"], raw=body
        )

    def __repr__(self) -> str:  # never shows the key
        key = "set" if self._api_key else "none"
        return f"{type(self).__name__}(base_url={self.base_url!r}, key={key})"


def error_answer(body: Any) -> str | None:
    """The provider's own error from a JSON answer (``success: false`` or an ``error`` key)."""
    if not isinstance(body, dict):
        return None
    if body.get("success") is False or "error" in body:
        detail = body.get("error", body)
        return json.dumps(detail, default=str, sort_keys=True)[:500]
    return None

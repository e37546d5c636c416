"""HTTP error shapes and the helpers that raise them.

404/409/401/403/503 answer ``{"detail": "<reason>"}``; 422 answers FastAPI's validation shape
(``{"detail": [{"loc": [...], "msg": "<reason>", "type": ...}]}``) whether pydantic or our own
checks refused the input, so a client parses one shape per status.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

from fastapi import HTTPException, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, ConfigDict

from metalcast_core import METAL_SYMBOLS, METALS_BY_SYMBOL, Metal

# Instants outside these bounds are refused (422): far-off years only overflow arithmetic.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class ErrorRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "why, in words"}]})

    detail: str


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error codes an operation can answer."""
    text = {
        400: "The body is not valid JSON",
        401: "No API key (header X-API-Key)",
        403: "Wrong API key",
        404: "Unknown symbol, version or resource",
        409: "The resource exists but is not ready (e.g. no production model yet)",
        503: "A backing service (database, S3, model file) is unavailable",
    }
    return {code: {"model": ErrorRead, "description": text[code]} for code in codes}


def unprocessable(where: str, name: str, message: str, value: Any = None) -> NoReturn:
    raise RequestValidationError(
        [{"loc": (where, name), "msg": message, "type": "value_error", "input": value}]
    )


def not_found(message: str) -> NoReturn:
    raise HTTPException(status.HTTP_404_NOT_FOUND, detail=message)


def conflict(message: str) -> NoReturn:
    raise HTTPException(status.HTTP_409_CONFLICT, detail=message)


def unavailable(message: str) -> NoReturn:
    raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=message)


def metal_or_404(symbol: str) -> Metal:
    metal = METALS_BY_SYMBOL.get(symbol.upper())
    if metal is None:
        not_found(f"unknown symbol {symbol!r}; known symbols: {', '.join(METAL_SYMBOLS)}")
    return metal


def as_utc(value: datetime, where: str, name: str) -> datetime:
    """Naive instants are taken as UTC; instants outside 1970..2200 are refused (422)."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not EARLIEST <= value < LATEST:
        unprocessable(where, name, f"must lie between {EARLIEST.year} and {LATEST.year}", value)
    return value


_ISO = re.compile(
    r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?([Zz]|[+-]\d{2}(:?\d{2})?)?$"
)


def _iso_text(value: Any) -> Any:
    # pydantic would also take a number as a Unix time; a query parameter must be ISO-8601.
    if isinstance(value, str) and not _ISO.match(value.strip()):
        raise ValueError("expected an ISO-8601 date-time such as 2026-01-15T10:00:00Z")
    return value


Instant = Annotated[datetime, BeforeValidator(_iso_text)]

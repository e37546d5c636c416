"""A provider's daily request budget (Alpha Vantage's free plan: 25 requests a day), counted
in a small JSON file so that every ``metalcast ingest`` run on the machine shares one count.

The day is the UTC day. ``metalcast ingest --budget`` prints what is used and left.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from metalcast_ingestor.sources.base import SourceUnavailable


class BudgetExhausted(SourceUnavailable):
    """The provider's requests for today are used up: try again after midnight UTC."""


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    provider: str
    day: date
    used: int
    limit: int

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)

    def as_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "day": self.day.isoformat(),
            "used": self.used,
            "limit": self.limit,
            "left": self.left,
        }


class RequestBudget:
    """Requests per provider per UTC day, kept in ``path``; ``limits``: provider -> per day."""

    def __init__(
        self,
        path: Path,
        limits: dict[str, int],
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self.path = path
        self.limits = dict(limits)
        self._today = today

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".budget-")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)

    def status(self, provider: str) -> BudgetStatus:
        today = self._today()
        entry = self._read().get(provider, {})
        used = int(entry.get("used", 0)) if entry.get("day") == today.isoformat() else 0
        return BudgetStatus(provider, today, used, self.limits.get(provider, 0))

    def take(self, provider: str) -> BudgetStatus:
        """Count one request; :class:`BudgetExhausted` (nothing counted) when none is left."""
        current = self.status(provider)
        if provider in self.limits and current.left <= 0:
            raise BudgetExhausted(
                f"{provider}: today's {current.limit} requests ({current.day.isoformat()}, UTC) "
                "are used up; the free plan allows no more until midnight UTC"
            )
        data = self._read()
        data[provider] = {"day": current.day.isoformat(), "used": current.used + 1}
        self._write(data)
        return self.status(provider)

    def exhaust(self, provider: str) -> None:
        """The provider said the day's quota is used (its own count wins over ours)."""
        today = self._today()
        data = self._read()
        data[provider] = {"day": today.isoformat(), "used": self.limits.get(provider, 0)}
        self._write(data)

"""The rolling features and their window rule, shared by both engines.

Per symbol, in date order:

- ``vol_moving_avg``: the mean of ``Volume`` over the window;
- ``adj_close_rolling_med``: the exact median of ``Adj Close`` over the window (the mean of
  the two middle values when the window holds an even number of rows).

The window (:class:`WindowRule`) is by default **30 calendar days**: the row's own date and
the 29 days before it, ``(date - 30 days, date]``, however many trading days that holds (about
21). ``--window rows`` makes it the row and the 29 rows before it instead.

Minimum periods: a row whose window holds fewer than ``min_periods`` rows gets null
features. The defaults are pandas' own: 1 for a calendar window (every row has a value, the
first days of a symbol averaging the few rows they have), the window size (30) for a row
window (a symbol's first 29 rows are null). Rows with a null feature are kept in the
dataset; training skips them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

WindowKind = Literal["calendar", "rows"]


@dataclass(frozen=True)
class WindowRule:
    kind: WindowKind = "calendar"
    size: int = 30  # days (calendar) or rows
    min_periods: int | None = None  # None: 1 (calendar) or ``size`` (rows)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"window size must be at least 1, not {self.size}")
        if self.min_periods is not None and not 1 <= self.min_periods <= max(self.size, 1):
            raise ValueError(f"min_periods must be between 1 and {self.size}")

    @property
    def effective_min_periods(self) -> int:
        if self.min_periods is not None:
            return self.min_periods
        return 1 if self.kind == "calendar" else self.size

    def describe(self) -> str:
        unit = "calendar days" if self.kind == "calendar" else "rows"
        return f"{self.size} {unit}, min_periods {self.effective_min_periods}"

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind, "size": self.size, "min_periods": self.effective_min_periods}

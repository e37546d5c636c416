"""How a forecast request becomes a number of hourly steps after the model's cutoff.

The model predicts from its own cutoff (``window_end`` of its version: the last hour it was
trained on). Step k is ``cutoff + k h``.

* ``horizon=N``: steps 1..N.
* ``until=T``: every hourly step from ``cutoff + 1 h`` up to the first hour at or after T,
  so T itself is covered. T must lie in the future.

Either way at most ``api.max_horizon_h`` steps. Daily instruments step in days: NYSE
sessions for stocks and ETFs, calendar days otherwise (``metalcast_models.sessions``);
``until`` then counts those days up to the first one on or after T.

When newer data exists than the cutoff (the trainer has not caught up), steps still start
after the cutoff, and the response says so with ``last_observation`` and ``stale_hours``.
"""

from __future__ import annotations

import math
from datetime import datetime, time, timedelta

from metalcast_models.sessions import steps_until

HOUR = timedelta(hours=1)


class StepsProblem(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_choice(horizon: int | None, until: datetime | None) -> None:
    if horizon is None and until is None:
        raise StepsProblem("horizon", "give either `horizon` (hours) or `until` (a date-time)")
    if horizon is not None and until is not None:
        raise StepsProblem("until", "give `horizon` or `until`, not both")


def steps_for(
    cutoff: datetime,
    now: datetime,
    max_horizon_h: int,
    horizon: int | None = None,
    until: datetime | None = None,
    step: timedelta = HOUR,
    calendar: str | None = None,
) -> int:
    """The number of steps after ``cutoff``; ``StepsProblem`` if it cannot be given.
    ``step``: the instrument's cadence (an hour, or a day); ``max_horizon_h`` then counts
    steps of that cadence. ``calendar``: the exchange whose sessions daily steps fall on
    (``None``: every day)."""
    if step != HOUR:
        return _steps_of(cutoff, now, max_horizon_h, horizon, until, step, calendar)
    check_choice(horizon, until)
    if horizon is not None:
        if horizon < 1:
            raise StepsProblem("horizon", "horizon must be at least 1 hour")
        if horizon > max_horizon_h:
            raise StepsProblem(
                "horizon", f"horizon {horizon} h is beyond the maximum of {max_horizon_h} h"
            )
        return horizon
    assert until is not None
    if until <= now:
        raise StepsProblem("until", f"until {until.isoformat()} is in the past")
    n = math.ceil((until - cutoff) / HOUR)
    if n < 1:  # a cutoff in the future: only possible with a clock far behind
        raise StepsProblem("until", f"until is not after the model's cutoff {cutoff.isoformat()}")
    if n > max_horizon_h:
        raise StepsProblem(
            "until",
            f"until is {n} h after the model's cutoff {cutoff.isoformat()}; "
            f"the maximum is {max_horizon_h} h",
        )
    return n


def stale_hours(cutoff: datetime, last_observation: datetime | None) -> int:
    if last_observation is None or last_observation <= cutoff:
        return 0
    return int((last_observation - cutoff) // HOUR)


def _steps_of(
    cutoff: datetime,
    now: datetime,
    max_steps: int,
    horizon: int | None,
    until: datetime | None,
    step: timedelta,
    calendar: str | None = None,
) -> int:
    daily = step == timedelta(days=1)
    unit = ("trading days" if calendar else "d") if daily else f"x {step}"
    check_choice(horizon, until)
    if horizon is not None:
        if horizon < 1:
            raise StepsProblem("horizon", "horizon must be at least 1 step")
        if horizon > max_steps:
            raise StepsProblem(
                "horizon", f"horizon {horizon} {unit} is beyond the maximum of {max_steps} {unit}"
            )
        return horizon
    assert until is not None
    if until <= now:
        raise StepsProblem("until", f"until {until.isoformat()} is in the past")
    if daily and calendar is not None:
        # The first day at or after ``until`` (a time within a day reaches into that day).
        last = until.date() if until.time() == time() else until.date() + timedelta(days=1)
        n = steps_until(cutoff.date(), last, calendar)
    else:
        n = math.ceil((until - cutoff) / step)
    if n < 1:
        raise StepsProblem("until", f"until is not after the model's cutoff {cutoff.isoformat()}")
    if n > max_steps:
        raise StepsProblem(
            "until",
            f"until is {n} {unit} after the model's cutoff {cutoff.isoformat()}; "
            f"the maximum is {max_steps} {unit}",
        )
    return n

"""Point-in-time features: a revised value never reaches a row dated before its revision, a
value is used only after its publication lag, missing is missing, and over every row of a
realistic dataset no feature uses a vintage or an observation that was not knowable on the
row's date."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from metalcast_models.valuation import (
    gold_features,
    known_values,
    point_in_time_features,
)
from tests.valuation_data import LAGS, LEVELS, gold_closes, vintages

D = date(2024, 1, 1)


def day(n: int) -> date:
    return D + timedelta(days=n)


def frame(rows: list[tuple[str, date, date, float | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["series_id", "date", "realtime_start", "value"])


def test_a_revised_value_never_leaks_into_an_earlier_row() -> None:
    # Observation of day 0: first released on day 1 as 100, revised on day 9 to 200.
    v = frame([("S", day(0), day(1), 100.0), ("S", day(0), day(9), 200.0)])
    dates = [day(n) for n in range(0, 12)]
    values, obs, starts = known_values(v, 1, dates)
    assert math.isnan(values[0])  # day 0: not yet published (lag 1, first release day 1)
    assert values[1:9] == [100.0] * 8  # days 1..8 only knew the first release
    assert values[9:] == [200.0] * 3  # the revision from its realtime_start on
    assert starts[8] == day(1)
    assert starts[9] == day(9)
    assert obs[5] == day(0)


def test_a_value_waits_for_its_publication_lag_even_if_its_vintage_is_older() -> None:
    # Dated day 5 and (implausibly) in a vintage from day 5: lag 3 keeps it out until day 8.
    v = frame([("S", day(0), day(1), 1.0), ("S", day(5), day(5), 2.0)])
    values, obs, _ = known_values(v, 3, [day(n) for n in range(3, 10)])
    assert values == [1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0]  # day 8 = 5 + 3 is the first
    assert obs[-1] == day(5)


def test_missing_is_missing_never_zero_and_old_values_expire() -> None:
    v = frame(
        [
            ("S", day(0), day(1), 5.0),
            ("S", day(1), day(2), None),  # FRED "."
            ("S", day(2), day(3), 7.0),
            ("S", day(2), day(4), None),  # revised to missing
        ]
    )
    values, obs, _ = known_values(v, 1, [day(n) for n in range(1, 6)], max_age_days=45)
    assert values == [5.0, 5.0, 7.0, 5.0, 5.0]  # the "." never shows up as 0
    assert obs[3] == day(0)
    late, _, _ = known_values(v, 1, [day(80)], max_age_days=45)
    assert math.isnan(late[0])  # 79 days old: not carried forward


def test_gold_features_use_closes_strictly_before_the_row() -> None:
    closes = gold_closes(date(2018, 1, 1), date(2018, 6, 30))
    days = list(closes.index)
    full = gold_features(closes, days)
    for k in (40, 77, len(days) - 1):
        before = closes.iloc[:k]  # only what was known before days[k]
        alone = gold_features(before, [days[k]])
        for name in ("gold_vs_ema30", "gold_ret_1", "gold_ret_5", "gold_ret_20", "ema30"):
            assert alone[name].iloc[0] == pytest.approx(full[name].iloc[k], rel=1e-12)
        assert full["target"].iloc[k] == pytest.approx(
            math.log(closes.iloc[k] / closes.iloc[k - 1])
        )


def test_every_row_of_a_realistic_dataset_uses_only_what_was_knowable_that_day() -> None:
    v = vintages()
    closes = gold_closes()
    days = list(closes.index)
    pit = point_in_time_features(v, LAGS, closes, days, levels=LEVELS)
    checked = 0
    for series_id, lag in LAGS.items():
        starts = pit.realtime_starts[series_id]
        observed = pit.observation_dates[series_id]
        rows = pd.to_datetime(pd.Series(days, index=starts.index))
        used = starts.notna()
        assert used.mean() > 0.9, series_id  # the check is not vacuous
        assert (starts[used] <= rows[used]).all(), f"{series_id}: a vintage from the future"
        limit = rows[used] - pd.Timedelta(days=lag)
        assert (observed[used] <= limit).all(), f"{series_id}: inside its publication lag"
        checked += int(used.sum())
        # And the value is that observation's newest vintage known on the row's date.
        by_key = v[v["series_id"] == series_id]
        for i in np.linspace(0, len(days) - 1, 25).astype(int):
            if not used.iloc[i]:
                continue
            obs_day = observed.iloc[i].date()
            known = by_key[
                (by_key["date"] == obs_day) & (by_key["realtime_start"] <= days[i])
            ].sort_values("realtime_start")
            assert starts.iloc[i].date() == known["realtime_start"].iloc[-1]
            if series_id in LEVELS:
                assert pit.frame[series_id].iloc[i] == known["value"].iloc[-1]
    assert checked > 5_000


def test_revised_series_really_have_revisions() -> None:
    v = vintages()
    revised = v.groupby(["series_id", "date"]).size()
    assert (revised > 1).sum() > 500  # the dataset exercises the revision rule

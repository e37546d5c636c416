"""Replaying CSV and Parquet files: good rows kept, bad rows Rejected with reasons."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from metalcast_core import PriceTick
from metalcast_ingestor.sources import Fetched, Rejected, ReplaySource

CSV = (
    b"timestamp,symbol,price\n"
    b"2025-01-02T14:00:00Z,XAU,2651.3\n"  # 2: good, ISO with Z
    b"2025-01-02T14:00:00,XAG,29.68\n"  # 3: good, naive = UTC
    b"1735826400,XPT,923.5\n"  # 4: good, epoch seconds (2025-01-02 14:00Z)
    b"2025-01-02 15:00:00+01:00,XPD,912.3\n"  # 5: good, offset converted to UTC
    b"yesterday,XAU,2650\n"  # 6: bad timestamp
    b"2025-01-02T15:00:00Z,XAU,abc\n"  # 7: bad price (string)
    b"2025-01-02T15:00:00Z,XAU,0\n"  # 8: bad price (zero)
    b"2025-01-02T15:00:00Z,XAU,-3\n"  # 9: bad price (negative)
    b"2025-01-02T15:00:00Z,XAU,NaN\n"  # 10: bad price (NaN)
    b"2025-01-02T15:00:00Z,XAU\n"  # 11: missing column
    b"2025-01-02T15:00:00Z,,2651\n"  # 12: missing column (empty symbol)
    b"\n"  # blank: not a row
    b"2025-01-02T15:00:00Z,xau!,2651\n"  # 14: invalid symbol
    b"2025-01-02T15:00:00Z,XAU,2652.1\n"  # 15: good
)


def _flatten(chunks: list[list[Fetched]]) -> list[Fetched]:
    return [item for chunk in chunks for item in chunk]


async def _rows(source: ReplaySource) -> list[Fetched]:
    return _flatten([chunk async for chunk in source.rows()])


async def test_csv_good_rows_kept_bad_rows_rejected(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_bytes(CSV)
    items = await _rows(ReplaySource(path))
    ticks = [x for x in items if isinstance(x, PriceTick)]
    rejected = [x for x in items if isinstance(x, Rejected)]
    assert len(ticks) + len(rejected) == 13  # every non-blank row accounted for
    hour = datetime(2025, 1, 2, 14, tzinfo=UTC)
    assert [(t.symbol, t.observed_at, t.price) for t in ticks] == [
        ("XAU", hour, 2651.3),
        ("XAG", hour, 29.68),
        ("XPT", hour, 923.5),
        ("XPD", hour, 912.3),
        ("XAU", datetime(2025, 1, 2, 15, tzinfo=UTC), 2652.1),
    ]
    assert all(t.source == "replay" for t in ticks)
    assert [r.reason for r in rejected] == [
        "line 6: bad timestamp 'yesterday'",
        "line 7: bad price 'abc'",
        "line 8: bad price '0'",
        "line 9: bad price '-3'",
        "line 10: bad price 'NaN'",
        "line 11: missing column 'price'",
        "line 12: missing column 'symbol'",
        "line 14: xau!: String should match pattern '^[A-Z0-9][A-Z0-9._-]{0,19}$'",
    ]
    assert rejected[0].original == b"yesterday,XAU,2650"  # the line as read
    assert rejected[5].original == b"2025-01-02T15:00:00Z,XAU"
    assert all(r.source == "replay" for r in rejected)


async def test_csv_source_column_overrides_the_name(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        b"symbol,price,timestamp,source,note\n"
        b"XAU,2651.3,2025-01-02T14:00:00Z,lbma,ignored\n"
        b"XAU,2650.9,2025-01-02T14:00:00Z,,default\n"
    )
    items = await _rows(ReplaySource(path, source_name="archive"))
    assert [x.source for x in items if isinstance(x, PriceTick)] == ["lbma", "archive"]


async def test_csv_header_without_a_required_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"time,symbol,price\n2025-01-02T14:00:00Z,XAU,1\n")
    with pytest.raises(ValueError, match="header lacks timestamp"):
        await _rows(ReplaySource(path))


async def test_csv_chunks_and_history_filter(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_bytes(CSV)
    source = ReplaySource(path, chunk_size=4)
    sizes = [len(c) async for c in source.rows()]
    assert sizes == [4, 4, 4, 1]
    start, end = datetime(2025, 1, 2, 14, tzinfo=UTC), datetime(2025, 1, 2, 15, tzinfo=UTC)
    kept = _flatten([c async for c in source.history(["XAU", "XPT"], start, end)])
    ticks = [(x.symbol, x.price) for x in kept if isinstance(x, PriceTick)]
    assert ticks == [("XAU", 2651.3), ("XPT", 923.5)]  # XAG/XPD and 15:00 filtered out
    assert sum(isinstance(x, Rejected) for x in kept) == 8  # rejected rows always pass


async def test_latest_is_the_newest_row_per_symbol(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_bytes(CSV)
    out = await ReplaySource(path).latest(["XAU", "XPT", "BTC"])
    assert isinstance(out[0], PriceTick)
    assert out[0].price == 2652.1
    assert isinstance(out[1], PriceTick)
    assert out[1].price == 923.5
    assert isinstance(out[2], Rejected)
    assert out[2].reason == "BTC: no valid row in prices.csv"


async def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "prices.parquet"
    table = pa.table(
        {
            "timestamp": [
                "2025-01-02T14:00:00Z",
                "1735826400",
                "2025-01-02T14:00:00",
                "not a time",
                "2025-01-02T15:00:00Z",
                None,
                "2025-01-02T16:00:00Z",
            ],
            "symbol": ["XAU", "XAG", "XPT", "XAU", "XAU", "XAU", "XPD"],
            "price": [2651.3, 29.68, 923.5, 2650.0, float("nan"), 2650.0, -1.0],
            "source": ["lbma", None, None, None, None, None, None],
        }
    )
    pq.write_table(table, path)
    items = await _rows(ReplaySource(path))
    ticks = [x for x in items if isinstance(x, PriceTick)]
    assert [(t.symbol, t.price, t.source) for t in ticks] == [
        ("XAU", 2651.3, "lbma"),
        ("XAG", 29.68, "replay"),
        ("XPT", 923.5, "replay"),
    ]
    assert {t.observed_at for t in ticks} == {datetime(2025, 1, 2, 14, tzinfo=UTC)}
    rejected = [x for x in items if isinstance(x, Rejected)]
    assert [r.reason for r in rejected] == [
        "row 4: bad timestamp 'not a time'",
        "row 5: bad price nan",
        "row 6: missing column 'timestamp'",
        "row 7: bad price -1.0",
    ]
    assert json.loads(rejected[0].original) == {
        "timestamp": "not a time",
        "symbol": "XAU",
        "price": 2650.0,
        "source": None,
    }


async def test_parquet_native_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "native.pq"
    hours = [datetime(2025, 1, 2, h) for h in (10, 11)]  # naive: UTC
    table = pa.table(
        {
            "timestamp": pa.array(hours, type=pa.timestamp("us")),
            "symbol": ["XAU", "XAU"],
            "price": [2650.5, 2651.0],
        }
    )
    pq.write_table(table, path)
    items = await _rows(ReplaySource(path))
    assert [x.observed_at for x in items if isinstance(x, PriceTick)] == [
        h.replace(tzinfo=UTC) for h in hours
    ]

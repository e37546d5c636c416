"""Every bad input of the issue lands in quarantine with its reason, the good rows all land
(exactly, with the contract's types), and a failed run leaves the last good dataset. Small
hand-made CSVs on disk; the polars engine (the Spark engine runs the same validation, see
tests/integration/test_bulk_spark.py)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from metalcast_bulk.engines.polars_engine import PolarsEngine
from metalcast_bulk.ingest import STAGE, ingest
from metalcast_bulk.schema import PRICES_SCHEMA, QUARANTINE_SCHEMA
from metalcast_bulk.storage import NoCurrentRun, Store, new_run_id
from metalcast_bulk.validate import DEFAULT_MAX_PRICE, ROW_REASONS, Report, SourceFile

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"
GOOD = [
    "2020-01-02,10.0,11.0,9.5,10.5,10.4,1000",
    "2020-01-03,10.5,11.5,10.0,11.0,10.9,2000",
    "2020-01-06,11.0,12.0,10.5,11.5,11.4,1500",
]

# name -> (file content, {line: reason}); a line number of 0 means the whole file.
ROW_CASES: dict[str, tuple[list[str], dict[int, str]]] = {
    "unparseable_date": (
        ["2020-13-45,1,2,1,1,1,10", "yesterday,1,2,1,1,1,10"],
        {5: "unparseable_date", 6: "unparseable_date"},
    ),
    "duplicate_date": (["2020-01-03,10.5,11.5,10.0,11.0,10.9,2500"], {5: "duplicate_date"}),
    "non_positive_price": (
        ["2020-01-07,0,2,0.5,1,1,10", "2020-01-08,1,2,0.5,1,-1,10"],
        {5: "non_positive_price", 6: "non_positive_price"},
    ),
    "absurd_adj_close_negative": (["2020-01-07,1,2,0.5,1,-2.38e21,10"], {5: "absurd_price"}),
    "absurd_adj_close_positive": (["2020-01-07,1,2,0.5,1,1.9e19,10"], {5: "absurd_price"}),
    "absurd_infinite": (["2020-01-07,1,inf,0.5,1,1,10"], {5: "absurd_price"}),
    "high_below_low": (["2020-01-07,1,0.5,2,1,1,10"], {5: "high_below_low"}),
    "negative_volume": (["2020-01-07,1,2,0.5,1,1,-10"], {5: "negative_volume"}),
    "non_integer_volume": (["2020-01-07,1,2,0.5,1,1,10.5"], {5: "non_integer_volume"}),
    "missing_value": (
        ["2020-01-07,1,2,,1,1,10", "2020-01-08,1,2,0.5,1,1"],
        {5: "missing_value", 6: "missing_value"},
    ),
    "unparseable_number": (["2020-01-07,1,two,0.5,1,1,10"], {5: "unparseable_number"}),
}
FILE_CASES: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty_file"),
    "header_only": (f"{HEADER}\n".encode(), "empty_file"),
    "html": (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>\n", "html"),
    "wrong_header": (b"date,open,high,low,close,volume\n2020-01-02,1,2,1,1,10\n", "wrong_header"),
    "not_utf8": (HEADER.encode() + b"\n2020-01-02,\xff\xfe,2,1,1,1,10\n", "unreadable"),
}


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def _run(tmp_path: Path) -> tuple[Store, str]:
    out = Store.open(str(tmp_path / "out"))
    result = ingest(
        PolarsEngine(workers=2, batch_files=2),
        Store.open(str(tmp_path / "in")),
        "",
        out,
        new_run_id(),
        DEFAULT_MAX_PRICE,
        keep=3,
    )
    return out, result.run_id


def _datasets(out: Store, run_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    _, files = out.current_files(STAGE, "data")
    prices = out.read_parquet(files)
    quarantine_files = out.list_files(f"{out.run_dir(STAGE, run_id)}/quarantine", ".parquet")
    quarantine = (
        out.read_parquet(quarantine_files)
        if quarantine_files
        else pl.DataFrame(schema=QUARANTINE_SCHEMA)
    )
    return prices, quarantine


@pytest.mark.parametrize("case", sorted(ROW_CASES))
def test_a_bad_row_lands_in_quarantine_with_its_reason_and_the_good_rows_all_land(
    tmp_path: Path, case: str
) -> None:
    extra, expected = ROW_CASES[case]
    lines = [HEADER, *GOOD, *extra]
    _write(tmp_path / "in" / "stocks" / "AAA.csv", ("\n".join(lines) + "\n").encode())
    _write(tmp_path / "in" / "etfs" / "EEE.csv", ("\n".join([HEADER, *GOOD]) + "\n").encode())
    out, run_id = _run(tmp_path)
    prices, quarantine = _datasets(out, run_id)

    assert prices.schema == PRICES_SCHEMA
    good = prices.filter(pl.col("Symbol") == "AAA").sort("Date")
    assert good["Date"].to_list() == ["2020-01-02", "2020-01-03", "2020-01-06"]
    assert good["Volume"].to_list() == [1000, 2000, 1500]
    assert good["Adj Close"].to_list() == [10.4, 10.9, 11.4]
    assert prices.filter(pl.col("Symbol") == "EEE")["ETF"].to_list() == [True] * 3
    assert good["ETF"].to_list() == [False] * 3

    assert quarantine.schema == QUARANTINE_SCHEMA
    assert dict(zip(quarantine["line"], quarantine["reason"], strict=True)) == expected
    assert set(quarantine["file"]) == {"stocks/AAA.csv"}
    # the raw text is kept as it was read
    for line, raw in zip(quarantine["line"], quarantine["Date"], strict=True):
        assert raw == lines[line - 1].split(",")[0]

    report = out.read_json(f"{out.run_dir(STAGE, run_id)}/report.json")
    assert report["rows_good"] == 6
    assert report["rows_quarantined"] == len(expected)
    assert report["rows_read"] == 6 + len(expected)
    counts: dict[str, int] = {}
    for reason in expected.values():
        counts[reason] = counts.get(reason, 0) + 1
    assert report["reasons"] == counts
    assert report["by_file"] == {"stocks/AAA.csv": counts}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_a_bad_file_lands_in_quarantine_with_its_reason(tmp_path: Path, case: str) -> None:
    content, reason = FILE_CASES[case]
    _write(tmp_path / "in" / "stocks" / "BAD.csv", content)
    _write(tmp_path / "in" / "stocks" / "AAA.csv", ("\n".join([HEADER, *GOOD]) + "\n").encode())
    out, run_id = _run(tmp_path)
    prices, quarantine = _datasets(out, run_id)

    assert prices["Symbol"].to_list() == ["AAA"] * 3
    assert quarantine.select("Symbol", "file", "line", "reason").rows() == [
        ("BAD", "stocks/BAD.csv", None, reason)
    ]
    report = out.read_json(f"{out.run_dir(STAGE, run_id)}/report.json")
    assert report["reasons"] == {reason: 1}
    assert report["files"] == 2
    assert report["files_ok"] == 1


def test_every_row_reason_is_covered_by_a_case() -> None:
    seen = {reason for _, expected in ROW_CASES.values() for reason in expected.values()}
    assert seen == set(ROW_REASONS)


def test_us_dates_are_read_and_written_as_iso(tmp_path: Path) -> None:
    _write(
        tmp_path / "in" / "etfs" / "SPY.csv",
        f"{HEADER}\n1/4/1999,1229.2,1248.8,1219.1,1228.1,1228.1,877000000\n".encode(),
    )
    out, run_id = _run(tmp_path)
    prices, _ = _datasets(out, run_id)
    assert prices.select("Date", "Volume").rows() == [("1999-01-04", 877000000)]


def test_a_failed_run_leaves_the_last_good_dataset(tmp_path: Path) -> None:
    _write(tmp_path / "in" / "stocks" / "AAA.csv", ("\n".join([HEADER, *GOOD]) + "\n").encode())
    out, first = _run(tmp_path)
    assert out.current(STAGE)["run_id"] == first

    # Every file broken: the run refuses to publish.
    _write(tmp_path / "in" / "stocks" / "AAA.csv", b"<html>oops</html>")
    with pytest.raises(ValueError, match="no good rows"):
        _run(tmp_path)
    assert out.current(STAGE)["run_id"] == first
    prices, _ = _datasets(out, first)
    assert prices.height == 3

    # A run that dies half way (a writer fails) does not move the pointer either.
    class Broken(PolarsEngine):
        def ingest_kind(
            self,
            source: Store,
            files: list[SourceFile],
            out: Store,
            run_dir: str,
            kind: str,
            max_price: float,
        ) -> Report:
            raise OSError("disk full")

    _write(tmp_path / "in" / "stocks" / "AAA.csv", ("\n".join([HEADER, *GOOD]) + "\n").encode())
    with pytest.raises(OSError, match="disk full"):
        ingest(Broken(), Store.open(str(tmp_path / "in")), "", out, new_run_id(), 1e7, keep=3)
    assert out.current(STAGE)["run_id"] == first


def test_a_store_without_a_published_run_says_so(tmp_path: Path) -> None:
    with pytest.raises(NoCurrentRun):
        Store.open(str(tmp_path)).current(STAGE)


def test_fields_with_surrounding_spaces_are_read_as_their_values(tmp_path: Path) -> None:
    rows = [HEADER, *GOOD, " 2020-01-07 , 11.0,12.0 ,10.5,11.5,11.4, 900 "]
    _write(tmp_path / "in" / "stocks" / "AAA.csv", ("\n".join(rows) + "\n").encode())
    out, run_id = _run(tmp_path)
    prices, quarantine = _datasets(out, run_id)
    assert prices.filter(pl.col("Date") == "2020-01-07").select("High", "Volume").rows() == [
        (12.0, 900)
    ]
    assert quarantine.height == 0

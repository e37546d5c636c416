"""Validation: every problem becomes a quarantined row (or file) with its reason, never a crash.

Whole-file reasons (:data:`FILE_REASONS`), checked on the bytes before parsing:
``empty_file`` (no bytes, or a header and no rows), ``html`` (an HTML page instead of CSV),
``wrong_header`` (the first line is not ``Date,Open,High,Low,Close,Adj Close,Volume``),
``unreadable`` (not UTF-8, or not parseable as CSV).

Row reasons (:data:`ROW_REASONS`), the first that applies, in this order:
``unparseable_date`` (neither ``YYYY-MM-DD`` nor ``M/D/YYYY``), ``missing_value``,
``unparseable_number``, ``absurd_price`` (a price that is not finite or whose magnitude
exceeds ``max_price``, e.g. an ``Adj Close`` of -2.38e21 or 1.9e19), ``non_positive_price``,
``high_below_low``, ``negative_volume``, ``non_integer_volume`` (a fraction, or beyond int64),
then ``duplicate_date``: a second row of a symbol on a date already seen (the first one, in
file order, is kept).

The same functions serve both engines: polars calls them on batches of files, Spark on each
partition of its file list (``mapInArrow``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import polars as pl

from metalcast_bulk.schema import (
    DATE,
    ETF,
    LINE,
    PRICE_COLUMNS,
    PRICES_SCHEMA,
    QUARANTINE_SCHEMA,
    RAW_COLUMNS,
    REASON,
    SECURITY_NAME,
    SOURCE_FILE,
    SYMBOL,
    VOLUME,
)

EMPTY_FILE: Final = "empty_file"
HTML: Final = "html"
WRONG_HEADER: Final = "wrong_header"
UNREADABLE: Final = "unreadable"
FILE_REASONS: Final = (EMPTY_FILE, HTML, WRONG_HEADER, UNREADABLE)

UNPARSEABLE_DATE: Final = "unparseable_date"
MISSING_VALUE: Final = "missing_value"
UNPARSEABLE_NUMBER: Final = "unparseable_number"
ABSURD_PRICE: Final = "absurd_price"
NON_POSITIVE_PRICE: Final = "non_positive_price"
HIGH_BELOW_LOW: Final = "high_below_low"
NEGATIVE_VOLUME: Final = "negative_volume"
NON_INTEGER_VOLUME: Final = "non_integer_volume"
DUPLICATE_DATE: Final = "duplicate_date"
ROW_REASONS: Final = (
    UNPARSEABLE_DATE,
    MISSING_VALUE,
    UNPARSEABLE_NUMBER,
    ABSURD_PRICE,
    NON_POSITIVE_PRICE,
    HIGH_BELOW_LOW,
    NEGATIVE_VOLUME,
    NON_INTEGER_VOLUME,
    DUPLICATE_DATE,
)

# Largest price taken as real (USD). Berkshire Hathaway A, the dearest US share, has traded
# below 1e6; 1e7 leaves room and still catches the corrupt values of the original dump.
DEFAULT_MAX_PRICE: Final = 1e7
_INT64_MAX: Final = 2.0**63


@dataclass(frozen=True)
class SourceFile:
    """One input CSV: where it is (relative to the store's root and to the input folder),
    the symbol it holds and what the metadata says of it."""

    path: str  # relative to the store's root: what to read
    name: str  # relative to the input folder: what reports and quarantine show
    symbol: str
    etf: bool
    security_name: str | None


@dataclass
class Report:
    """Counts of one ingest run: per reason, and per file for the files with a problem."""

    files: int = 0
    files_ok: int = 0
    rows_read: int = 0
    rows_good: int = 0
    rows_quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    by_file: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, other: Report) -> None:
        self.files += other.files
        self.files_ok += other.files_ok
        self.rows_read += other.rows_read
        self.rows_good += other.rows_good
        self.rows_quarantined += other.rows_quarantined
        self.reasons.update(other.reasons)
        for name, counts in other.by_file.items():
            self.by_file.setdefault(name, Counter()).update(counts)

    def as_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "files_ok": self.files_ok,
            "files_with_problems": len(self.by_file),
            "rows_read": self.rows_read,
            "rows_good": self.rows_good,
            "rows_quarantined": self.rows_quarantined,
            "reasons": dict(sorted(self.reasons.items())),
            "by_file": {k: dict(sorted(v.items())) for k, v in sorted(self.by_file.items())},
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Report:
        return cls(
            files=int(value["files"]),
            files_ok=int(value["files_ok"]),
            rows_read=int(value["rows_read"]),
            rows_good=int(value["rows_good"]),
            rows_quarantined=int(value["rows_quarantined"]),
            reasons=Counter(value["reasons"]),
            by_file={k: Counter(v) for k, v in value["by_file"].items()},
        )

    def lines(self) -> list[str]:
        """The report as a person reads it."""
        out = [
            f"{self.files} files ({self.files_ok} clean, {len(self.by_file)} with problems), "
            f"{self.rows_read} rows read: {self.rows_good} good, "
            f"{self.rows_quarantined} quarantined"
        ]
        for reason, count in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(f"  {reason:<20} {count:>10}")
        shown = sorted(self.by_file.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        for name, counts in shown[:20]:
            detail = ", ".join(f"{r} {n}" for r, n in sorted(counts.items()))
            out.append(f"  {name}: {detail}")
        if len(shown) > 20:
            out.append(f"  ... and {len(shown) - 20} more files (see report.json)")
        return out


def file_problem(data: bytes) -> str | None:
    """The whole-file reason, or ``None`` if the file looks like our CSV."""
    text = data.lstrip(b"\xef\xbb\xbf").strip()
    if not text:
        return EMPTY_FILE
    head = text[:512].lower()
    if head.startswith(b"<") or b"<html" in head or b"<!doctype" in head:
        return HTML
    first, _, rest = text.partition(b"\n")
    try:
        header = first.decode("utf-8").strip().split(",")
    except UnicodeDecodeError:
        return UNREADABLE
    if tuple(h.strip().strip('"') for h in header) != RAW_COLUMNS:
        return WRONG_HEADER
    if not rest.strip():
        return EMPTY_FILE
    return None


def read_raw(source: SourceFile, data: bytes) -> pl.DataFrame | str:
    """The file's rows as strings with their symbol, ETF flag, file name and line number,
    or the whole-file reason."""
    problem = file_problem(data)
    if problem is not None:
        return problem
    try:
        frame = pl.read_csv(
            data.lstrip(b"\xef\xbb\xbf"),
            infer_schema=False,
            new_columns=list(RAW_COLUMNS),
            truncate_ragged_lines=True,
        )
    except (pl.exceptions.PolarsError, UnicodeDecodeError):
        return UNREADABLE
    if frame.width != len(RAW_COLUMNS):
        return WRONG_HEADER
    return frame.with_columns(
        pl.lit(source.symbol, pl.String).alias(SYMBOL),
        pl.lit(source.security_name, pl.String).alias(SECURITY_NAME),
        pl.lit(source.etf, pl.Boolean).alias(ETF),
        pl.lit(source.name, pl.String).alias(SOURCE_FILE),
        (pl.int_range(pl.len(), dtype=pl.Int64) + 2).alias(LINE),
    )


def file_quarantine(source: SourceFile, reason: str) -> pl.DataFrame:
    """One quarantine row standing for a whole rejected file."""
    row: dict[str, Any] = {name: None for name in QUARANTINE_SCHEMA}
    row.update({SYMBOL: source.symbol, ETF: source.etf, SOURCE_FILE: source.name, REASON: reason})
    return pl.DataFrame([row], schema=QUARANTINE_SCHEMA)


def _num(name: str) -> str:
    return f"_{name}"


def validate_rows(
    raw: pl.DataFrame, max_price: float = DEFAULT_MAX_PRICE
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split rows read by :func:`read_raw` (any number of files, each file's rows in order)
    into good rows (:data:`PRICES_SCHEMA`) and quarantined rows (:data:`QUARANTINE_SCHEMA`)."""
    numeric = [*PRICE_COLUMNS, VOLUME]
    text = [DATE, *numeric]
    # Fields are taken as written; surrounding spaces are stripped only in a batch that has
    # any (a cheap search, where stripping every field costs a third of the validation).
    spaced = raw.height > 0 and bool(
        raw.select(
            pl.any_horizontal([pl.col(c).str.contains(" ", literal=True).any() for c in text])
        ).item()
    )
    field = {c: pl.col(c).str.strip_chars() if spaced else pl.col(c) for c in text}
    date = field[DATE].str.to_date("%Y-%m-%d", strict=False)
    if raw.height and bool(raw[DATE].str.contains("/", literal=True).any()):
        date = pl.coalesce(date, field[DATE].str.to_date("%m/%d/%Y", strict=False))
    parsed = raw.with_columns(
        date.alias("_date"),
        *[field[c].cast(pl.Float64, strict=False).alias(_num(c)) for c in numeric],
        pl.any_horizontal([pl.col(c).is_null() | (field[c] == "") for c in numeric]).alias(
            "_missing"
        ),
    )
    prices = [pl.col(_num(c)) for c in PRICE_COLUMNS]
    volume = pl.col(_num(VOLUME))
    reason = (
        pl.when(pl.col("_date").is_null())
        .then(pl.lit(UNPARSEABLE_DATE))
        .when(pl.col("_missing"))
        .then(pl.lit(MISSING_VALUE))
        .when(pl.any_horizontal([p.is_null() for p in [*prices, volume]]))
        .then(pl.lit(UNPARSEABLE_NUMBER))
        .when(pl.any_horizontal([~p.is_finite() | (p.abs() > max_price) for p in prices]))
        .then(pl.lit(ABSURD_PRICE))
        .when(pl.any_horizontal([p <= 0 for p in prices]))
        .then(pl.lit(NON_POSITIVE_PRICE))
        .when(pl.col(_num("High")) < pl.col(_num("Low")))
        .then(pl.lit(HIGH_BELOW_LOW))
        .when(volume < 0)
        .then(pl.lit(NEGATIVE_VOLUME))
        .when(~volume.is_finite() | (volume != volume.floor()) | (volume >= _INT64_MAX))
        .then(pl.lit(NON_INTEGER_VOLUME))
        .otherwise(pl.lit(None, pl.String))
    )
    checked = parsed.with_columns(reason.alias(REASON))
    ok = checked.filter(pl.col(REASON).is_null())
    duplicate = ~pl.col("_date").is_first_distinct().over(SYMBOL)
    ok = ok.with_columns(
        pl.when(duplicate).then(pl.lit(DUPLICATE_DATE)).otherwise(pl.col(REASON)).alias(REASON)
    )
    bad = pl.concat(
        [checked.filter(pl.col(REASON).is_not_null()), ok.filter(pl.col(REASON).is_not_null())]
    )
    good = ok.filter(pl.col(REASON).is_null()).select(
        pl.col(SYMBOL),
        pl.col(SECURITY_NAME),
        pl.col(ETF),
        pl.col("_date").cast(pl.String).alias(DATE),  # ISO: YYYY-MM-DD
        *[pl.col(_num(c)).alias(c) for c in PRICE_COLUMNS],
        pl.col(_num(VOLUME)).cast(pl.Int64).alias(VOLUME),
    )
    quarantined = bad.select(list(QUARANTINE_SCHEMA)).sort(SOURCE_FILE, LINE)
    return good.cast(PRICES_SCHEMA), quarantined.cast(QUARANTINE_SCHEMA)


def report_of(n_files: int, good_rows: int, quarantined: pl.DataFrame) -> Report:
    """Counts of a batch of ``n_files`` files: its good rows and its quarantine (a row with
    no line number stands for a whole rejected file)."""
    report = Report(files=n_files)
    counts = quarantined.group_by(SOURCE_FILE, REASON).len()
    for name, why, n in counts.iter_rows():
        report.reasons[why] += n
        report.by_file.setdefault(name, Counter())[why] += n
    report.rows_good = good_rows
    report.rows_quarantined = quarantined.filter(pl.col(LINE).is_not_null()).height
    report.rows_read = report.rows_good + report.rows_quarantined
    report.files_ok = report.files - len(report.by_file)
    return report

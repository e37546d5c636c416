"""Replay prices from a file: CSV or Parquet with the columns ``timestamp,symbol,price``.

* ``timestamp``: ISO-8601 (naive = UTC) or unix epoch seconds; in Parquet also a native
  timestamp column (naive = UTC).
* ``symbol``: as stored (e.g. ``XAU``); ``price``: USD per troy ounce, a number.
* optional ``source``: overrides the source name of that row (default ``replay``).
* other columns are ignored.

A row that cannot become a tick is never dropped: it becomes a :class:`Rejected` with the
reason (bad timestamp, bad price, missing column, invalid symbol, ...) and the original
bytes: the CSV line as read, or the Parquet row as JSON. A file whose header lacks a required
column is refused as a whole (``ValueError``).

``rows()`` yields everything in file order, ``history()`` only the rows of the given symbols
in ``[start, end)`` (rejected rows are always yielded, since their symbol or time may be the
very thing that is wrong). Both yield chunks of at most ``chunk_size`` items; the file is read
in a worker thread, chunk by chunk, so the event loop is never blocked for long.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from metalcast_core import PriceTick
from metalcast_ingestor.sources._parse import as_utc, parse_timestamp
from metalcast_ingestor.sources.base import Fetched, PriceSource, Rejected, make_tick

REQUIRED_COLUMNS = ("timestamp", "symbol", "price")
PARQUET_SUFFIXES = (".parquet", ".pq")


class ReplaySource(PriceSource):
    name = "replay"

    def __init__(
        self, path: str | Path, *, source_name: str = "replay", chunk_size: int = 10_000
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.path = Path(path)
        self.name = source_name
        self.chunk_size = chunk_size

    @property
    def is_parquet(self) -> bool:
        return self.path.suffix.lower() in PARQUET_SUFFIXES

    async def rows(self) -> AsyncIterator[list[Fetched]]:
        """Every row of the file, in file order, in chunks."""
        chunks = self._read_chunks()
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            yield chunk

    async def history(
        self, symbols: Sequence[str], start: datetime, end: datetime
    ) -> AsyncIterator[list[Fetched]]:
        """The rows of ``symbols`` (all if empty) with ``observed_at`` in ``[start, end)``."""
        wanted = set(symbols)
        lo, hi = as_utc(start), as_utc(end)
        async for chunk in self.rows():
            kept = [
                item
                for item in chunk
                if isinstance(item, Rejected)
                or ((not wanted or item.symbol in wanted) and lo <= item.observed_at < hi)
            ]
            if kept:
                yield kept

    async def latest(self, symbols: Sequence[str]) -> list[Fetched]:
        """The newest row of each symbol in the file; a symbol with none is a Rejected."""
        newest: dict[str, PriceTick] = {}
        wanted = set(symbols)
        async for chunk in self.rows():
            for item in chunk:
                if isinstance(item, PriceTick) and item.symbol in wanted:
                    current = newest.get(item.symbol)
                    if current is None or item.observed_at >= current.observed_at:
                        newest[item.symbol] = item
        return [
            newest.get(symbol)
            or Rejected(self.name, f"{symbol}: no valid row in {self.path.name}", b"")
            for symbol in dict.fromkeys(symbols)
        ]

    # --- reading (runs in a worker thread) ------------------------------------------------

    def _read_chunks(self) -> Iterator[list[Fetched]]:
        return self._parquet_chunks() if self.is_parquet else self._csv_chunks()

    def _csv_chunks(self) -> Iterator[list[Fetched]]:
        with self.path.open("rb") as handle:
            header_line = handle.readline()
            header = [
                c.strip().lower()
                for c in next(csv.reader([header_line.decode("utf-8-sig", "replace")]), [])
            ]
            self._check_header(header)
            index = {
                name: header.index(name) for name in (*REQUIRED_COLUMNS, "source") if name in header
            }
            chunk: list[Fetched] = []
            for number, line in enumerate(handle, start=2):
                if not line.strip():
                    continue
                chunk.append(self._csv_row(line, number, index))
                if len(chunk) >= self.chunk_size:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

    def _check_header(self, header: Sequence[str]) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ValueError(
                f"{self.path}: header lacks {', '.join(missing)}; "
                f"expected {','.join(REQUIRED_COLUMNS)}[,source], got {','.join(header)}"
            )

    def _csv_row(self, line: bytes, number: int, index: dict[str, int]) -> Fetched:
        original = line.rstrip(b"\r\n")
        try:
            fields = next(csv.reader([line.decode("utf-8")]))
        except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
            return Rejected(self.name, f"line {number}: unreadable ({exc})", original)
        values: dict[str, Any] = {}
        for name, position in index.items():
            if position >= len(fields) or (not fields[position].strip() and name != "source"):
                if name == "source":
                    continue
                return Rejected(self.name, f"line {number}: missing column {name!r}", original)
            values[name] = fields[position].strip()
        return self._build(values, number, "line", original)

    def _parquet_chunks(self) -> Iterator[list[Fetched]]:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(self.path)
        names = [n.lower() for n in parquet.schema_arrow.names]
        self._check_header(names)
        originals = {n.lower(): n for n in parquet.schema_arrow.names}
        columns = [originals[c] for c in (*REQUIRED_COLUMNS, "source") if c in originals]
        number = 0
        for batch in parquet.iter_batches(batch_size=self.chunk_size, columns=columns):
            chunk: list[Fetched] = []
            for row in batch.to_pylist():
                number += 1
                values = {k.lower(): v for k, v in row.items()}
                original = json.dumps(row, default=str).encode()
                missing = [c for c in REQUIRED_COLUMNS if values.get(c) is None]
                if missing:
                    chunk.append(
                        Rejected(
                            self.name, f"row {number}: missing column {missing[0]!r}", original
                        )
                    )
                    continue
                chunk.append(self._build(values, number, "row", original))
            if chunk:
                yield chunk

    def _build(self, values: dict[str, Any], number: int, unit: str, original: bytes) -> Fetched:
        where = f"{unit} {number}"
        source = values.get("source") or self.name
        if not isinstance(source, str):
            return Rejected(self.name, f"{where}: bad source {source!r}", original)
        observed = parse_timestamp(values["timestamp"])
        if observed is None:
            return Rejected(source, f"{where}: bad timestamp {values['timestamp']!r}", original)
        price = _number(values["price"])
        if price is None:
            return Rejected(source, f"{where}: bad price {values['price']!r}", original)
        symbol = values["symbol"]
        if not isinstance(symbol, str):
            return Rejected(source, f"{where}: bad symbol {symbol!r}", original)
        result = make_tick(
            source=source, symbol=symbol.strip(), observed_at=observed, price=price, raw=None
        )
        if isinstance(result, Rejected):
            return Rejected(source, f"{where}: {result.reason}", original)
        return result


def _number(value: Any) -> float | None:
    """A finite, positive price from a number or numeric text, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal | int):
        value = float(value)
    elif isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, float) or not math.isfinite(value) or value <= 0:
        return None
    return value

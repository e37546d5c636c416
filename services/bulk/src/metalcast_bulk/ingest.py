"""The ingest stage: an input folder of per-symbol CSVs -> the ``prices`` dataset (+ its
quarantine and report), published atomically.

Input layout (disk or S3, see :mod:`metalcast_bulk.storage`)::

    DIR/stocks/<SYMBOL>.csv   DIR/etfs/<SYMBOL>.csv   DIR/symbols_valid_meta.csv (optional)

Output, under the data store's ``prices/runs/<run_id>/``::

    data/stocks/part-00000.parquet ...     good rows (PRICES_SCHEMA), sorted by Symbol, Date
    data/etfs/part-00000.parquet ...
    quarantine/<kind>/part-*.parquet       rejected rows and files (QUARANTINE_SCHEMA)
    reports/<kind>.json, report.json       counts per reason and per file

and finally ``prices/CURRENT`` names the run. Each kind is ingested on its own
(:func:`ingest_kind`, what the DAG's parallel tasks run) and :func:`publish` merges their
reports and moves the pointer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import polars as pl

from metalcast_bulk.engines import Engine
from metalcast_bulk.schema import ETF, KINDS, META_FILE, SECURITY_NAME, SYMBOL
from metalcast_bulk.storage import Store
from metalcast_bulk.validate import Report, SourceFile

STAGE = "prices"


@dataclass(frozen=True)
class IngestResult:
    run_id: str
    report: Report
    seconds: float
    pointer: dict[str, Any]


def read_meta(source: Store, input_dir: str) -> dict[str, tuple[str | None, bool | None]]:
    """``Symbol -> (Security Name, ETF)`` from ``symbols_valid_meta.csv`` (empty if absent
    or unreadable: the files are ingested all the same, without names)."""
    rel = f"{input_dir}/{META_FILE}".lstrip("/")
    if not source.exists(rel):
        return {}
    try:
        meta = pl.read_csv(source.read_bytes(rel), infer_schema=False)
    except Exception:  # a broken metadata file costs names, not the run
        return {}
    if SYMBOL not in meta.columns:
        return {}
    names = meta[SECURITY_NAME] if SECURITY_NAME in meta.columns else None
    flags = meta[ETF] if ETF in meta.columns else None
    out: dict[str, tuple[str | None, bool | None]] = {}
    for i, symbol in enumerate(meta[SYMBOL]):
        flag = None if flags is None or flags[i] is None else flags[i].strip().upper() == "Y"
        out[str(symbol).strip()] = (None if names is None else names[i], flag)
    return out


def discover(source: Store, input_dir: str, kind: str) -> list[SourceFile]:
    """The CSV files of one kind (``stocks`` or ``etfs``), sorted by symbol."""
    meta = read_meta(source, input_dir)
    base = f"{input_dir}/{kind}".strip("/")
    files = []
    for rel in source.list_files(base, ".csv"):
        name = rel[len(input_dir.strip("/")) + 1 :] if input_dir.strip("/") else rel
        symbol = rel.rsplit("/", 1)[-1].removesuffix(".csv")
        security_name, _ = meta.get(symbol, (None, None))
        files.append(SourceFile(rel, name, symbol, kind == "etfs", security_name))
    return files


def ingest_kind(
    engine: Engine,
    source: Store,
    input_dir: str,
    out: Store,
    run_id: str,
    kind: str,
    max_price: float,
) -> Report:
    """Validate and write one kind into the (unpublished) run; its report is stored beside."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    run_dir = out.run_dir(STAGE, run_id)
    files = discover(source, input_dir, kind)
    report = engine.ingest_kind(source, files, out, run_dir, kind, max_price)
    out.write_json(f"{run_dir}/reports/{kind}.json", report.as_json())
    return report


def publish(out: Store, run_id: str, keep: int, **extra: Any) -> tuple[Report, dict[str, Any]]:
    """Merge the kinds' reports into ``report.json`` and point ``prices/CURRENT`` at the run.
    Refuses a run without a single good row (the last good dataset stays)."""
    run_dir = out.run_dir(STAGE, run_id)
    report = Report()
    kinds = []
    for rel in out.list_files(f"{run_dir}/reports", ".json"):
        report.add(Report.from_json(out.read_json(rel)))
        kinds.append(rel.rsplit("/", 1)[-1].removesuffix(".json"))
    if report.rows_good == 0:
        raise ValueError(
            f"run {run_id} has no good rows ({report.files} files): not published, "
            "the last good dataset stays"
        )
    out.write_json(f"{run_dir}/report.json", {"run_id": run_id, **report.as_json()})
    pointer = out.publish(
        STAGE,
        run_id,
        kinds=sorted(kinds),
        rows=report.rows_good,
        quarantined=report.rows_quarantined,
        **extra,
    )
    out.prune(STAGE, keep)
    return report, pointer


def ingest(
    engine: Engine,
    source: Store,
    input_dir: str,
    out: Store,
    run_id: str,
    max_price: float,
    keep: int,
) -> IngestResult:
    """Both kinds, then publish: what ``metalcast bulk ingest DIR`` runs."""
    started = time.perf_counter()
    for kind in KINDS:
        ingest_kind(engine, source, input_dir, out, run_id, kind, max_price)
    report, pointer = publish(out, run_id, keep, engine=engine.name, input=source.uri(input_dir))
    return IngestResult(run_id, report, time.perf_counter() - started, pointer)

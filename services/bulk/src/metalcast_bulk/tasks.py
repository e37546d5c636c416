"""What the ``market_data_bulk`` DAG's tasks call: synchronous, settings from the
environment (``METALCAST_BULK__INPUT_URL``, ``METALCAST_BULK__DATA_URL``, ...), a small
JSON-able result each (Airflow keeps it as the task's XCom).

The DAG file imports this module inside its task functions, never at parse time. A task
that fails part way leaves nothing published: Airflow retries it, into the same run.
"""

from __future__ import annotations

from typing import Any

from metalcast_bulk.bootstrap import build_service
from metalcast_bulk.config import BulkSettings
from metalcast_bulk.service import BulkService
from metalcast_bulk.storage import new_run_id


def _service(settings: BulkSettings | None) -> BulkService:
    from metalcast_core import configure_logging

    settings = settings or BulkSettings()
    configure_logging(settings.log_level)
    return build_service(settings)


def plan(settings: BulkSettings | None = None) -> dict[str, str]:
    """The run every stage of this DAG run writes: its id and the input folder."""
    settings = settings or BulkSettings()
    return {"run_id": new_run_id(), "input": settings.bulk.input_url}


def ingest_kind(
    run: dict[str, str], kind: str, settings: BulkSettings | None = None
) -> dict[str, Any]:
    service = _service(settings)
    report = service.ingest_kind(run["input"], run["run_id"], kind)
    for line in report.lines():
        print(line)
    return {
        "kind": kind,
        "rows_good": report.rows_good,
        "rows_quarantined": report.rows_quarantined,
    }


def publish(run: dict[str, str], settings: BulkSettings | None = None) -> dict[str, Any]:
    service = _service(settings)
    report = service.publish(run["input"], run["run_id"])
    for line in report.lines():
        print(line)
    return {
        "run_id": run["run_id"],
        **{k: v for k, v in report.as_json().items() if k != "by_file"},
    }


def features(run: dict[str, str], settings: BulkSettings | None = None) -> dict[str, Any]:
    result = _service(settings).features(run["run_id"])
    return {"run_id": result.run_id, "rows": result.rows, "seconds": round(result.seconds, 2)}


def train(run: dict[str, str], settings: BulkSettings | None = None) -> dict[str, Any]:
    result, recorded = _service(settings).train(run["run_id"])
    out: dict[str, Any] = {"run_id": result.run_id, "metrics": result.metrics}
    if recorded is not None:
        out.update(version=recorded.version, promoted=recorded.promoted, decision=recorded.decision)
    return out

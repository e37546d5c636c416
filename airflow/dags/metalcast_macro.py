"""metalcast_macro: every day at 22:30 UTC (after FRED posts the day's H.15 rates, around
16:15 US Eastern), pull the macro series with their vintages from FRED into
macro.observations.v1 (docs/macro.md); the sink's macro loop (`metalcast sink macro`) stores
them and announces the load, which retrains the models that read them.

The pull asks for every vintage of the observations of the last
METALCAST_INGEST__MACRO_RECENT_DAYS days (idempotent: a rerun stores nothing twice). A series
FRED refuses fails the task after the others are published; a refused key fails it at once.
The hourly metalcast_watch DAG checks each series' freshness and the macro DLQ.
Thin: no I/O at import; the task imports metalcast_ingestor inside its function.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import dag, task


@dag(
    dag_id="metalcast_macro",
    schedule="30 22 * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "metalcast",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
    },
    dagrun_timeout=timedelta(minutes=30),
    tags=["metalcast", "macro"],
    doc_md=__doc__,
)
def metalcast_macro() -> None:
    @task(execution_timeout=timedelta(minutes=20))
    def pull_macro() -> dict[str, Any]:
        """FRED -> macro.observations.v1; raises naming each series FRED refused."""
        from metalcast_ingestor import tasks

        return tasks.pull_macro()

    pull_macro()


metalcast_macro()

"""metalcast_watch: hourly, fail loudly when the pipeline is unhealthy.

Stale ticks of any metal, a failed last training run or a stuck one, the sink's or the
trainer's consumer lag over its threshold, or a dead-letter topic growing (every one:
prices.ticks.dlq and prices.bars.dlq, metalcast_watch.rules.DEAD_LETTER_TOPICS): the task fails
and its log lists every reason. Thresholds: METALCAST_WATCH__*
(metalcast_watch.config.WatchSection).
Thin: no I/O at import; the task imports metalcast_watch inside its function.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task


@dag(
    dag_id="metalcast_watch",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "metalcast", "retries": 0},
    dagrun_timeout=timedelta(minutes=30),
    tags=["metalcast", "watch"],
    doc_md=__doc__,
)
def metalcast_watch() -> None:
    @task(execution_timeout=timedelta(minutes=10))
    def check_pipeline() -> str:
        """Raises WatchFailed, listing every problem, when a check fails."""
        from metalcast_watch import tasks

        return tasks.check_pipeline()

    check_pipeline()


metalcast_watch()

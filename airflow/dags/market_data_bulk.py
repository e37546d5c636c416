"""market_data_bulk: every weekday, the full dump of daily US stock and ETF prices through the
bulk pipeline (docs/bulk.md): ingest stocks and ETFs in parallel, publish the validated
prices, compute the rolling features, train and record the volume model.

Thin: no I/O at import; each task imports metalcast_bulk inside its function. Settings come
from the workers' environment (METALCAST_BULK__INPUT_URL, METALCAST_BULK__DATA_URL, ...); in S3
the tasks use the bulk work's own identity (METALCAST_BULK__S3_ACCESS_KEY_ID and
METALCAST_BULK__S3_SECRET_ACCESS_KEY: the metalcast-bulk bucket, and adding the volume model's
file), not the backup's key the workers also carry (docs/operations.md, "Roles and identities").
plan -> [ingest_stocks, ingest_etfs] -> publish -> features -> train. Every stage writes its
own run folder and publishes it last, so a failed or retried task never leaves a half-written
dataset where readers look.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import dag, task

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "metalcast",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


@dag(
    dag_id="market_data_bulk",
    schedule="0 6 * * 1-5",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=2),
    tags=["metalcast", "bulk"],
    doc_md=__doc__,
)
def market_data_bulk() -> None:
    @task
    def plan() -> dict[str, str]:
        """The run id every stage writes under, and the input folder."""
        from metalcast_bulk import tasks

        return tasks.plan()

    @task(execution_timeout=timedelta(minutes=30))
    def ingest_stocks(run: dict[str, str]) -> dict[str, Any]:
        """stocks/*.csv -> prices (not yet published) + quarantine + report."""
        from metalcast_bulk import tasks

        return tasks.ingest_kind(run, "stocks")

    @task(execution_timeout=timedelta(minutes=30))
    def ingest_etfs(run: dict[str, str]) -> dict[str, Any]:
        """etfs/*.csv -> prices (not yet published) + quarantine + report."""
        from metalcast_bulk import tasks

        return tasks.ingest_kind(run, "etfs")

    @task
    def publish(
        run: dict[str, str], stocks: dict[str, Any], etfs: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge the reports, store them, make the run the current prices dataset."""
        from metalcast_bulk import tasks

        return tasks.publish(run)

    @task(execution_timeout=timedelta(minutes=30))
    def features(run: dict[str, str], published: dict[str, Any]) -> dict[str, Any]:
        """vol_moving_avg and adj_close_rolling_med per symbol -> the features dataset."""
        from metalcast_bulk import tasks

        return tasks.features(run)

    @task(execution_timeout=timedelta(minutes=30))
    def train(run: dict[str, str], built: dict[str, Any]) -> dict[str, Any]:
        """The volume model: time split, metrics vs naive, recorded in the registry."""
        from metalcast_bulk import tasks

        return tasks.train(run)

    run = plan()
    published = publish(run, ingest_stocks(run), ingest_etfs(run))
    train(run, features(run, published))


market_data_bulk()

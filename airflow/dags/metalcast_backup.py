"""metalcast_backup: every six hours, back up PostgreSQL and the model files, verify, prune.

Thin: no I/O at import; each task imports metalcast_backup inside its function. Settings
come from the workers' environment (METALCAST_*), like every metalcast service.
backup -> verify -> prune: retention runs only after the new backup is verified, so a failed
backup or verification never deletes anything.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import dag, task

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "metalcast",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=20),
}


@dag(
    dag_id="metalcast_backup",
    schedule="0 */6 * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=2),
    tags=["metalcast", "backup"],
    doc_md=__doc__,
)
def metalcast_backup() -> None:
    @task(execution_timeout=timedelta(hours=1))
    def backup() -> str:
        """pg_dump of the whole database + every model file -> the backups bucket."""
        from metalcast_backup import tasks

        return tasks.backup()

    @task(execution_timeout=timedelta(hours=1))
    def verify(backup_id: str) -> str:
        """Restore into a scratch database; row counts and model sha256s must match."""
        from metalcast_backup import tasks

        tasks.verify(backup_id)
        return backup_id

    @task(retries=1)
    def prune(backup_id: str) -> dict[str, Any]:
        """Keep the newest complete, verified backups (METALCAST_BACKUP__KEEP, 20)."""
        from metalcast_backup import tasks

        return tasks.prune(backup_id)

    prune(verify(backup()))


metalcast_backup()

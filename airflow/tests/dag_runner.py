"""Run inside Airflow's venv: ``python dag_runner.py DAGS_DIR bag|test [DAG_ID]``.

``bag`` prints the DagBag's import errors and each DAG's schedule, tasks and retries;
``test DAG_ID`` runs ``dag.test()`` and prints the run's state and its tasks' states.
The last line of output is ``RESULT <json>``.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main() -> None:
    from airflow.dag_processing.dagbag import DagBag

    folder, command = sys.argv[1], sys.argv[2]
    bag = DagBag(dag_folder=folder)
    out: dict[str, Any]
    if command == "bag":
        out = {
            "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
            "dags": {
                dag_id: {
                    "schedule": str(dag.schedule),
                    "catchup": bool(dag.catchup),
                    "tasks": sorted(t.task_id for t in dag.tasks),
                    "retries": {t.task_id: t.retries for t in dag.tasks},
                    "backoff": {t.task_id: bool(t.retry_exponential_backoff) for t in dag.tasks},
                    "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
                }
                for dag_id, dag in bag.dags.items()
            },
        }
    else:
        dag = bag.get_dag(sys.argv[3])
        assert dag is not None, bag.import_errors
        run = dag.test()
        out = {
            "state": str(run.state),
            "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()},
        }
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()

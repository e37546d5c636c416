"""metalcast-watch: one check of the whole pipeline (Airflow's ``metalcast_watch`` runs it
hourly; ``metalcast-watch`` runs it once).

Fails, with every reason in the message, when:
- the newest tick of a metal is older than ``watch.max_tick_age_minutes`` (or there is none);
- the last training run failed, or a run has been ``running`` longer than
  ``watch.max_run_minutes`` (stuck);
- the sink's or the trainer's consumer group lags more than its threshold;
- the dead-letter topic grew since the previous watch run.

:mod:`~metalcast_watch.observe` gathers the figures (PostgreSQL, Kafka);
:mod:`~metalcast_watch.rules` turns figures and thresholds into problems (pure);
:func:`watch` does both, records the run in ``ops.watch_runs`` and raises :class:`WatchFailed`.
Only metalcast-core's dependencies are needed, so Airflow's workers import it cheaply (inside
the task, never at DAG parse time).
"""

from metalcast_watch.config import WatchSection, WatchSettings
from metalcast_watch.rules import Figures, evaluate
from metalcast_watch.watch import WatchFailed, watch

__all__ = [
    "Figures",
    "WatchFailed",
    "WatchSection",
    "WatchSettings",
    "evaluate",
    "watch",
]

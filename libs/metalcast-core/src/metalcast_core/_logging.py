"""One logging set-up for every service: timestamped, levelled, to stderr."""

from __future__ import annotations

import logging
import sys

# aiokafka logs these at ERROR/WARNING while a consumer group's coordinator is still being
# elected (the first seconds after the broker starts, or after a group is created). They are
# expected and retried; past them the consumer works. Shown at INFO, with that explanation.
_COORDINATOR_STARTING = (
    "GroupCoordinatorNotAvailableError",
    "Marking the coordinator dead",
    "NotCoordinatorForGroupError",
)


class CoordinatorStartupFilter(logging.Filter):
    """Downgrade aiokafka's coordinator-election noise to INFO, saying it is expected."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO and any(
            marker in record.getMessage() for marker in _COORDINATOR_STARTING
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.getMessage()} (expected while the group coordinator starts)"
            record.args = ()
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    for name in ("aiokafka.consumer.group_coordinator", "aiokafka.conn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, CoordinatorStartupFilter) for f in logger.filters):
            logger.addFilter(CoordinatorStartupFilter())
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)

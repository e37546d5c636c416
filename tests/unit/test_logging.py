"""aiokafka's coordinator-election messages are expected at start-up: INFO, not ERROR."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from metalcast_core import configure_logging


@pytest.fixture(autouse=True)
def _restore_level() -> Iterator[None]:
    yield
    logging.getLogger("aiokafka.consumer.group_coordinator").setLevel(logging.NOTSET)


def test_coordinator_startup_noise_is_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    logger = logging.getLogger("aiokafka.consumer.group_coordinator")
    logger.setLevel(logging.INFO)
    logger.error("Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError")
    logger.error("Something else went wrong")
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "INFO aiokafka.consumer.group_coordinator: Group Coordinator Request failed: [Error 15]"
        " GroupCoordinatorNotAvailableError (expected while the group coordinator starts)",
        "ERROR aiokafka.consumer.group_coordinator: Something else went wrong",
    ]


def test_at_warning_the_noise_is_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING")
    logger = logging.getLogger("aiokafka.consumer.group_coordinator")
    logger.setLevel(logging.WARNING)
    logger.warning("Marking the coordinator dead (node 1)for group sink-1.")
    logger.warning("A real warning")
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "WARNING aiokafka.consumer.group_coordinator: A real warning"
    ]

"""The chaos run (:mod:`metalcast.chaos`) in CI: a short plan on a stack of its own.

A steady feed of known ticks while the sink, the trainer, the broker, PostgreSQL and MinIO are
each killed with SIGKILL and started again at random moments after the first write, poison
messages are injected, and a backup is restored into the live database mid-stream. Then every
count must hold: nothing lost or duplicated, every hourly row right, one event per batch,
every training run closed, every poison message dead-lettered. ``bench/bench_chaos.py`` runs
longer plans.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from metalcast import chaos, stack

pytestmark = pytest.mark.chaos


@pytest.fixture
def root() -> Iterator[Path]:
    # PostgreSQL runs as 'nobody', which must be able to enter the folder (mkdtemp: 0700).
    folder = Path(tempfile.mkdtemp(prefix="metalcast-chaos-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def test_kills_poison_and_a_restore_lose_nothing(root: Path) -> None:
    config = chaos.private_config(root / "stack")
    plan = chaos.ChaosPlan(seconds=60, rate=100, seed=11)
    try:
        report = await chaos.run_chaos(plan, config, root / "work")
    finally:
        await asyncio.to_thread(stack.down, config, purge=True)
    print("\n".join(report.lines()))
    assert sorted(k.target for k in report.kills) == sorted(plan.kills)
    assert report.restore_s is not None  # the backup was restored mid-stream
    assert report.acked == int(plan.seconds * plan.rate)
    assert report.stored == report.acked
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.unexpected == 0
    assert report.hourly_rows > 0
    assert report.hourly_wrong == 0
    assert report.batches > 0
    assert (report.events_missing, report.events_duplicated) == (0, 0)
    assert report.runs > 0
    assert report.runs_open == 0
    assert report.poison_sent == plan.poison
    assert report.poison_dead_lettered == plan.poison
    assert report.ok

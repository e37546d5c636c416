"""What a restore says about the consumer positions it brings back (no servers)."""

from __future__ import annotations

from collections.abc import Sequence

from metalcast_backup.manifest import Manifest, Position
from metalcast_backup.positions import Bounds, check_positions

TOPIC = "prices.ticks.v1"


class FixedBounds:
    def __init__(self, bounds: Bounds) -> None:
        self._bounds = bounds
        self.asked: list[tuple[str, int]] = []

    async def bounds(self, partitions: Sequence[tuple[str, int]]) -> Bounds:
        self.asked += partitions
        return {p: b for p, b in self._bounds.items() if p in partitions}


def position(partition: int, offset: int) -> Position:
    return Position(consumer="sink", topic=TOPIC, partition=partition, next_offset=offset)


async def test_each_partition_says_what_is_read_again_and_what_is_gone() -> None:
    bounds = FixedBounds({(TOPIC, 0): (0, 120), (TOPIC, 1): (30, 50)})
    checks = await check_positions(bounds, [position(0, 96), position(1, 20), position(2, 7)])
    assert [(c.lost, c.reread) for c in checks] == [(0, 24), (10, 20), (1, 0)]
    lines = [c.line() for c in checks]
    assert lines[0] == (
        f"sink {TOPIC}[0] restored at offset 96: 24 message(s) published after the backup "
        "will be re-read"
    )
    assert "messages 20..29 (10) are gone and cannot be re-read; 20 will be" in lines[1]
    assert "the partition no longer exists" in lines[2]


async def test_no_positions_asks_nothing_of_kafka() -> None:
    bounds = FixedBounds({})
    assert await check_positions(bounds, []) == []
    assert bounds.asked == []


def test_manifests_written_before_positions_existed_still_read() -> None:
    old = (
        '{"backup_id": "20260101T000000.000000Z", "status": "complete", '
        '"started_at": "2026-01-01T00:00:00Z", "tool_version": "0.1", '
        '"models_bucket": "metalcast-models"}'
    )
    assert Manifest.from_json(old).positions == []

"""What every backup operation works with, handed in by :mod:`metalcast_backup.bootstrap`: the
``backup`` section, the targets (the backups bucket and the off-box one, each a
:class:`BackupStore` on its own S3 client), the models bucket, the live database
(:class:`PgTarget`) and the encryption keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

from metalcast_backup import records
from metalcast_backup.config import BackupSection
from metalcast_backup.crypto import KeyRing
from metalcast_backup.dump import PgTarget
from metalcast_backup.manifest import Manifest
from metalcast_backup.positions import LogBounds
from metalcast_backup.store import BackupStore, ModelsBucket
from metalcast_backup.targets import Targets

T = TypeVar("T")


@dataclass(frozen=True)
class BackupContext:
    cfg: BackupSection
    # Primary first; every backup goes to each.
    targets: Targets
    models: ModelsBucket
    live: PgTarget
    # What Kafka keeps now, to check a restore's consumer positions against.
    log_bounds: LogBounds
    # None: backups are not encrypted (and encrypted ones cannot be read).
    keys: KeyRing | None = None

    @property
    def store(self) -> BackupStore:
        """The primary target's store (the backups bucket)."""
        return self.targets.primary

    @property
    def models_bucket(self) -> str:
        return self.models.bucket

    async def manifests(self) -> list[Manifest]:
        """The manifest of every backup on any target, oldest first (folders without one
        left out; a target that cannot be read is skipped)."""
        return await asyncio.to_thread(self.targets.manifests)

    async def record(self, work: Callable[[asyncpg.Connection], Awaitable[object]]) -> None:
        """Run ``work`` on a connection to the live database (``ops.*`` records)."""
        conn = await asyncpg.connect(self.live.url)
        try:
            await work(conn)
        finally:
            await conn.close()

    async def save(self, manifest: Manifest) -> None:
        """Mirror ``manifest`` into ``ops.backups``."""
        await self.record(
            lambda c: records.save_backup(
                c, manifest, bucket=self.store.bucket, prefix=self.store.root(manifest.backup_id)
            )
        )


async def timed(timer: dict[str, float], name: str, work: Awaitable[T]) -> T:
    """Await ``work``; its seconds go to ``timer[name]``, whatever the outcome."""
    begin = time.monotonic()
    try:
        return await work
    finally:
        timer[name] = round(time.monotonic() - begin, 4)

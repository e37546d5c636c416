"""The production volume model (symbol ``VOLUME`` in the registry) in memory.

Loaded once (downloaded from S3, checked against its recorded sha256, read by LightGBM) and
reloaded when the production pointer names another version: the pointer is read at most
every ``ttl_s`` seconds, and at once after :meth:`VolumeModels.invalidate` (a
``models.production.v1`` event for ``VOLUME``). Requests in between only read memory.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from metalcast_models import registry, sha256_of
from metalcast_models.registry import VersionInfo
from metalcast_models.volume import VOLUME_SYMBOL, VolumeModel

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)


class VolumeUnavailable(Exception):
    """The production volume model's file cannot be downloaded, verified or loaded."""


class NoVolumeModel(LookupError):
    """No volume model in production yet."""


@dataclass(frozen=True)
class LoadedVolume:
    info: VersionInfo
    model: VolumeModel
    loaded_at: datetime


def load_volume(s3: S3Client, info: VersionInfo) -> LoadedVolume:
    """Blocking: download, verify and load (call in a thread)."""
    with tempfile.TemporaryDirectory(prefix="metalcast-volume-") as tmp:
        try:
            path = registry.download_artifact(s3, info.artifact_uri, Path(tmp))
        except Exception as exc:
            raise VolumeUnavailable(f"cannot download {info.artifact_uri}: {exc}") from exc
        actual = sha256_of(path)
        if actual != info.sha256:
            raise VolumeUnavailable(
                f"{info.artifact_uri}: sha256 {actual} is not the recorded {info.sha256}"
            )
        try:
            model = VolumeModel.load(path)
        except Exception as exc:
            raise VolumeUnavailable(f"cannot load {info.artifact_uri}: {exc}") from exc
    return LoadedVolume(info, model, datetime.now(UTC))


class VolumeModels:
    def __init__(self, s3: S3Client, pool: asyncpg.Pool, ttl_s: float) -> None:
        self._s3 = s3
        self._pool = pool
        self._ttl_s = ttl_s
        self._loaded: LoadedVolume | None = None
        self._checked_at = float("-inf")
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._checked_at = float("-inf")

    async def current(self) -> LoadedVolume:
        """The production model; :class:`NoVolumeModel` if there is none,
        :class:`VolumeUnavailable` if its file will not load."""
        loaded = self._loaded
        if loaded is not None and time.monotonic() - self._checked_at < self._ttl_s:
            return loaded
        async with self._lock:
            if self._loaded is not None and time.monotonic() - self._checked_at < self._ttl_s:
                return self._loaded
            async with self._pool.acquire() as conn:
                infos = await registry.production(conn)
            info = next((i for i in infos if i.symbol == VOLUME_SYMBOL), None)
            if info is None:
                raise NoVolumeModel("no volume model in production yet: run `metalcast bulk train`")
            if self._loaded is None or self._loaded.info.id != info.id:
                self._loaded = await asyncio.to_thread(load_volume, self._s3, info)
                log.info("loaded the volume model v%d (id %d)", info.version, info.id)
            self._checked_at = time.monotonic()
            return self._loaded

"""Disk or S3, the same code: a :class:`Store` is a root folder on a pyarrow filesystem.

``Store.open("/data/bulk", s3)`` is a local folder; ``Store.open("s3://bucket/prefix", s3)``
is a prefix in the bucket, reached with the ``METALCAST_S3__*`` endpoint and keys. Every path
a caller passes is relative to the root, with ``/`` separators.

Stages publish atomically: a run writes everything under ``<stage>/runs/<run_id>/`` and only
then replaces ``<stage>/CURRENT`` (one small JSON object naming the run: an ``os.replace`` on
disk, a single PUT in S3). Readers go through ``CURRENT``, so a run that fails half way
leaves the last good dataset in place.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from metalcast_core import S3Settings

CURRENT = "CURRENT"


class NoCurrentRun(LookupError):
    """A stage has never published a run."""


def new_run_id() -> str:
    """Sortable by time: ``20261130T171500Z-1a2b3c4d``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Store:
    fs: pafs.FileSystem
    root: str  # in the filesystem's own terms: "/abs/dir" or "bucket/prefix"
    url: str  # as the user gave it

    @classmethod
    def open(cls, url: str, s3: S3Settings | None = None) -> Store:
        if url.startswith("s3://"):
            if s3 is None:
                raise ValueError(f"{url} needs S3 settings")
            endpoint = s3.endpoint_url or ""
            scheme = "https"
            if "://" in endpoint:
                scheme, endpoint = endpoint.split("://", 1)
            fs = pafs.S3FileSystem(
                access_key=s3.access_key_id.get_secret_value(),
                secret_key=s3.secret_access_key.get_secret_value(),
                region=s3.region,
                endpoint_override=endpoint or None,
                scheme=scheme,
                force_virtual_addressing=False,
            )
            return cls(fs, url.removeprefix("s3://").rstrip("/"), url)
        path = os.path.abspath(url.removeprefix("file://"))
        return cls(pafs.LocalFileSystem(), path, url)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, rel: str) -> str:
        rel = rel.strip("/")
        return f"{self.root}/{rel}" if rel else self.root

    def uri(self, rel: str) -> str:
        """The path as a user or another engine names it (``s3://...`` or a local path)."""
        return f"s3://{self.path(rel)}" if not self.is_local else self.path(rel)

    # --- files --------------------------------------------------------------------------------

    def list_files(self, rel: str, suffix: str = "") -> list[str]:
        """Files under ``rel`` (recursively) ending with ``suffix``, relative to the root,
        sorted; empty if the folder does not exist."""
        selector = pafs.FileSelector(self.path(rel), recursive=True, allow_not_found=True)
        start = len(self.root) + 1
        return sorted(
            info.path[start:]
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File and info.path.endswith(suffix)
        )

    def exists(self, rel: str) -> bool:
        return bool(self.fs.get_file_info(self.path(rel)).type == pafs.FileType.File)

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self.path(rel)) as stream:
            return bytes(stream.read())

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write a whole file; on disk through a temporary name and a rename (atomic), in S3
        one PUT (atomic by nature)."""
        target = self.path(rel)
        if self.is_local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
            return
        with self.fs.open_output_stream(target) as out:
            out.write(data)

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def write_json(self, rel: str, value: Any) -> None:
        self.write_bytes(rel, json.dumps(value, indent=2, sort_keys=True).encode())

    def delete_dir(self, rel: str) -> None:
        target = self.path(rel)
        if self.fs.get_file_info(target).type != pafs.FileType.NotFound:
            self.fs.delete_dir(target)
        elif not self.is_local:  # S3 "folders" exist only through their keys
            for name in self.list_files(rel):
                self.fs.delete_file(self.path(name))

    # --- Parquet ------------------------------------------------------------------------------

    def write_parquet(self, rel: str, frame: pl.DataFrame, row_group_size: int = 256_000) -> None:
        """zstd, with polars' own writer (several times faster than pyarrow's here)."""
        if self.is_local:
            os.makedirs(os.path.dirname(self.path(rel)), exist_ok=True)
            frame.write_parquet(self.path(rel), compression="zstd", row_group_size=row_group_size)
            return
        sink = io.BytesIO()
        frame.write_parquet(sink, compression="zstd", row_group_size=row_group_size)
        self.write_bytes(rel, sink.getvalue())

    def read_parquet(self, files: list[str], columns: list[str] | None = None) -> pl.DataFrame:
        """Every file's rows, in the order given (a file's rows keep their order)."""
        if not files:
            raise FileNotFoundError(f"no Parquet files given under {self.url}")
        tables = [pq.read_table(self.path(f), columns=columns, filesystem=self.fs) for f in files]
        frame = pl.from_arrow(pa.concat_tables(tables))
        assert isinstance(frame, pl.DataFrame)
        return frame

    # --- stages: runs and the CURRENT pointer ---------------------------------------------------

    def run_dir(self, stage: str, run_id: str) -> str:
        return f"{stage}/runs/{run_id}"

    def current(self, stage: str) -> dict[str, Any]:
        """The published run of ``stage``: ``{"run_id": ..., "published_at": ..., ...}``."""
        if not self.exists(f"{stage}/{CURRENT}"):
            raise NoCurrentRun(f"{self.uri(stage)} has no published run yet")
        value = self.read_json(f"{stage}/{CURRENT}")
        assert isinstance(value, dict)
        return value

    def publish(self, stage: str, run_id: str, **extra: Any) -> dict[str, Any]:
        """Point ``stage`` at ``run_id`` (atomic), then delete all but the newest ``keep``
        runs (never the published one)."""
        pointer = {"run_id": run_id, "published_at": datetime.now(UTC).isoformat(), **extra}
        self.write_json(f"{stage}/{CURRENT}", pointer)
        return pointer

    def prune(self, stage: str, keep: int) -> list[str]:
        """Delete the oldest runs of ``stage`` beyond ``keep``, never the published one."""
        current = self.current(stage)["run_id"] if self.exists(f"{stage}/{CURRENT}") else None
        runs = sorted({f.split("/")[2] for f in self.list_files(f"{stage}/runs")})
        doomed = [r for r in runs[: max(len(runs) - keep, 0)] if r != current]
        for run_id in doomed:
            self.delete_dir(self.run_dir(stage, run_id))
        return doomed

    def current_files(self, stage: str, sub: str = "") -> tuple[str, list[str]]:
        """The published run id of ``stage`` and its Parquet files under ``sub``."""
        run_id = str(self.current(stage)["run_id"])
        base = self.run_dir(stage, run_id) + (f"/{sub}" if sub else "")
        files = self.list_files(base, ".parquet")
        return run_id, files

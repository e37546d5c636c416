"""S3 side of a backup: the layout in a backups bucket, and the models bucket's files.

    <backups bucket>/<prefix><id>/manifest.json          written first (running), then last
    <backups bucket>/<prefix><id>/database.dump           pg_dump, custom format
    <backups bucket>/<prefix><id>/models.tar              every models-bucket/<key>, by key

The same layout on every target (:mod:`metalcast_backup.targets`): one :class:`BackupStore`
per backups bucket, each on its own client. :class:`ModelsBucket` reads the model files into a
local tar and puts them back; it is on the models' S3, which may be another server.

boto3 is synchronous and its clients are thread-safe: the async service calls these
functions through ``asyncio.to_thread``, and model files move through a thread pool.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from metalcast_backup.manifest import Manifest, ModelFile, is_backup_id

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

MODELS_PREFIX = "models/"
MANIFEST = "manifest.json"
DUMP = "database.dump"
MODELS_TAR = "models.tar"
_CHUNK = 1 << 20
_TRANSFER = TransferConfig(multipart_threshold=64 * _CHUNK, multipart_chunksize=16 * _CHUNK)
_MISSING = {"NoSuchKey", "404", "NoSuchBucket"}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def is_missing(exc: ClientError) -> bool:
    """Whether S3 answered that the key or the bucket does not exist."""
    return exc.response.get("Error", {}).get("Code") in _MISSING


@dataclass(frozen=True)
class ModelObject:
    key: str
    size_bytes: int


@dataclass
class BackupStore:
    client: S3Client
    bucket: str
    prefix: str  # "backups/"
    name: str = "primary"  # which target: primary | offsite
    endpoint_url: str | None = None  # for the manifest (where the copy is)

    # --- layout ---------------------------------------------------------------------------

    def root(self, backup_id: str) -> str:
        return f"{self.prefix}{backup_id}/"

    def key(self, backup_id: str, filename: str) -> str:
        return f"{self.root(backup_id)}{filename}"

    def manifest_key(self, backup_id: str) -> str:
        return self.key(backup_id, MANIFEST)

    def dump_key(self, backup_id: str) -> str:
        return self.key(backup_id, DUMP)

    def models_key(self, backup_id: str) -> str:
        return self.key(backup_id, MODELS_TAR)

    # --- manifests ------------------------------------------------------------------------

    def write_manifest(self, manifest: Manifest) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.manifest_key(manifest.backup_id),
            Body=manifest.to_json(),
            ContentType="application/json",
        )

    def read_manifest(self, backup_id: str) -> Manifest | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.manifest_key(backup_id))
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        return Manifest.from_json(body["Body"].read())

    def backup_ids(self) -> list[str]:
        """Every backup folder under the prefix that holds an object, oldest first (ids sort
        by time); none if the bucket does not exist. Listed by key, not by common prefix: in
        a versioned bucket a deleted backup's folder holds only delete markers, and MinIO
        still lists it as a prefix."""
        ids = set()
        try:
            for key in self._keys(self.prefix):
                name = key[len(self.prefix) :].partition("/")[0]
                if is_backup_id(name):
                    ids.add(name)
        except ClientError as exc:
            if is_missing(exc):
                return []
            raise
        return sorted(ids)

    def manifests(self) -> list[tuple[str, Manifest | None]]:
        ids = self.backup_ids()
        if not ids:
            return []
        with ThreadPoolExecutor(max_workers=min(8, len(ids))) as pool:
            return list(zip(ids, pool.map(self.read_manifest, ids), strict=True))

    # --- the files ------------------------------------------------------------------------

    def upload(self, backup_id: str, filename: str, path: Path) -> None:
        self.client.upload_file(
            str(path), self.bucket, self.key(backup_id, filename), Config=_TRANSFER
        )

    def download(self, backup_id: str, filename: str, path: Path) -> None:
        self.client.download_file(
            self.bucket, self.key(backup_id, filename), str(path), Config=_TRANSFER
        )

    def upload_dump(self, backup_id: str, path: Path) -> None:
        self.upload(backup_id, DUMP, path)

    def download_dump(self, backup_id: str, path: Path) -> None:
        self.download(backup_id, DUMP, path)

    def sha256_of(self, backup_id: str, filename: str) -> tuple[str, int]:
        """The sha256 and size of a stored file, read as a stream (nothing kept)."""
        body = self.client.get_object(Bucket=self.bucket, Key=self.key(backup_id, filename))["Body"]
        digest, size = hashlib.sha256(), 0
        for block in body.iter_chunks(_CHUNK):
            digest.update(block)
            size += len(block)
        return digest.hexdigest(), size

    # --- deletion -------------------------------------------------------------------------

    def _keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def delete_backup(self, backup_id: str) -> int:
        """Delete every object of a backup; the manifest last. Returns how many. (In a
        versioned bucket this leaves delete markers: object lock keeps the versions.)"""
        root = self.root(backup_id)
        manifest = self.manifest_key(backup_id)
        keys = [k for k in self._keys(root) if k != manifest]
        for start in range(0, len(keys), 1000):
            chunk: list[ObjectIdentifierTypeDef] = [{"Key": k} for k in keys[start : start + 1000]]
            result = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk})
            if errors := result.get("Errors"):
                raise RuntimeError(
                    f"could not delete {len(errors)} objects of {backup_id} on {self.name}"
                )
        self.client.delete_object(Bucket=self.bucket, Key=manifest)
        return len(keys) + 1


# --- the models bucket ----------------------------------------------------------------------


@dataclass
class ModelsBucket:
    """The trainer's model files (``models/...``): read into a backup, put back by a restore."""

    client: S3Client
    bucket: str

    def objects(self) -> list[ModelObject]:
        out = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=MODELS_PREFIX):
            for obj in page.get("Contents", []):
                out.append(ModelObject(obj["Key"], int(obj["Size"])))
        return out

    def _fetch(self, obj: ModelObject) -> tuple[ModelFile, bytes]:
        got = self.client.get_object(Bucket=self.bucket, Key=obj.key)
        data = got["Body"].read()
        model = ModelFile(
            key=obj.key,
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
            recorded_sha256=got.get("Metadata", {}).get("sha256"),
        )
        return model, data

    def write_tar(
        self, objects: Sequence[ModelObject], workers: int, path: Path
    ) -> list[ModelFile]:
        """Read every model file (in parallel), hash the very bytes read, and write them all
        into one uncompressed tar at ``path`` (one upload per target instead of one per file;
        the zips inside are compressed already)."""
        fetched: list[tuple[ModelFile, bytes]] = []
        if objects:
            with ThreadPoolExecutor(max_workers=min(workers, len(objects))) as pool:
                fetched = list(pool.map(self._fetch, objects))
        fetched.sort(key=lambda item: item[0].key)
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
            for model, data in fetched:
                info = tarfile.TarInfo(model.key)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        return [model for model, _ in fetched]

    def put_back(self, tar: Path, models: Sequence[ModelFile], workers: int) -> None:
        """Put the archive's model files back (with their sha256 in the object metadata, as
        the trainer writes it)."""
        if not models:
            return
        wanted = {m.key: m for m in models}
        stored = {k: v for k, v in read_tar(tar) if k in wanted}
        if missing := wanted.keys() - stored.keys():
            raise RuntimeError(f"model files missing from the backup: {sorted(missing)}")

        def put(key: str) -> None:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=stored[key],
                Metadata={"sha256": wanted[key].sha256},
            )

        with ThreadPoolExecutor(max_workers=min(workers, len(stored))) as pool:
            list(pool.map(put, sorted(stored)))


def read_tar(path: Path) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(path, "r") as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                yield member.name, handle.read()


def check_models_tar(path: Path, models: Sequence[ModelFile]) -> list[str]:
    """Recompute every model copy's sha256 in the archive at ``path``; the problems found."""
    try:
        stored = dict(read_tar(path))
    except (OSError, tarfile.TarError) as exc:
        return [f"cannot read the model files: {exc}"]
    problems = []
    for model in models:
        data = stored.pop(model.key, None)
        if data is None:
            problems.append(f"{model.key}: missing from the backup")
        elif len(data) != model.size_bytes:
            problems.append(f"{model.key}: {len(data)} bytes, manifest says {model.size_bytes}")
        elif (digest := hashlib.sha256(data).hexdigest()) != model.sha256:
            problems.append(f"{model.key}: sha256 {digest}, manifest says {model.sha256}")
    problems += [f"{key}: in the backup but not in the manifest" for key in sorted(stored)]
    return problems

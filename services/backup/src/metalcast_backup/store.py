"""S3 side of a backup: the layout in the backups bucket and the model-file copies.

    <backups bucket>/<prefix><id>/manifest.json          written first (running), then last
    <backups bucket>/<prefix><id>/database.dump           pg_dump, custom format
    <backups bucket>/<prefix><id>/models.tar              every models-bucket/<key>, by key

boto3 is synchronous and its clients are thread-safe: the async service calls these
functions through ``asyncio.to_thread``, and model files move through a thread pool.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelObject:
    key: str
    size_bytes: int


@dataclass
class BackupStore:
    client: S3Client
    bucket: str
    prefix: str  # "backups/"

    # --- layout ---------------------------------------------------------------------------

    def root(self, backup_id: str) -> str:
        return f"{self.prefix}{backup_id}/"

    def manifest_key(self, backup_id: str) -> str:
        return f"{self.root(backup_id)}{MANIFEST}"

    def dump_key(self, backup_id: str) -> str:
        return f"{self.root(backup_id)}{DUMP}"

    def models_key(self, backup_id: str) -> str:
        return f"{self.root(backup_id)}{MODELS_TAR}"

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
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None
            raise
        return Manifest.from_json(body["Body"].read())

    def backup_ids(self) -> list[str]:
        """Every backup folder under the prefix, oldest first (ids sort by time)."""
        ids = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(self.prefix) :].rstrip("/")
                if is_backup_id(name):
                    ids.append(name)
        return sorted(ids)

    def manifests(self) -> list[tuple[str, Manifest | None]]:
        ids = self.backup_ids()
        if not ids:
            return []
        with ThreadPoolExecutor(max_workers=min(8, len(ids))) as pool:
            return list(zip(ids, pool.map(self.read_manifest, ids), strict=True))

    # --- the dump -------------------------------------------------------------------------

    def upload_dump(self, backup_id: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, self.dump_key(backup_id), Config=_TRANSFER)

    def download_dump(self, backup_id: str, path: Path) -> None:
        self.client.download_file(
            self.bucket, self.dump_key(backup_id), str(path), Config=_TRANSFER
        )

    # --- model files ----------------------------------------------------------------------

    def list_models(self, models_bucket: str) -> list[ModelObject]:
        out = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=models_bucket, Prefix=MODELS_PREFIX):
            for obj in page.get("Contents", []):
                out.append(ModelObject(obj["Key"], int(obj["Size"])))
        return out

    def _fetch(self, models_bucket: str, obj: ModelObject) -> tuple[ModelFile, bytes]:
        got = self.client.get_object(Bucket=models_bucket, Key=obj.key)
        data = got["Body"].read()
        model = ModelFile(
            key=obj.key,
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
            recorded_sha256=got.get("Metadata", {}).get("sha256"),
        )
        return model, data

    def copy_models_in(
        self, models_bucket: str, backup_id: str, objects: Sequence[ModelObject], workers: int
    ) -> list[ModelFile]:
        """Read every model file (in parallel), hash the very bytes read, and store them all
        as one uncompressed tar (``models.tar``): one upload instead of one per file, and
        the zips inside are compressed already."""
        if not objects:
            return []
        with ThreadPoolExecutor(max_workers=min(workers, len(objects))) as pool:
            fetched = list(pool.map(lambda o: self._fetch(models_bucket, o), objects))
        fetched.sort(key=lambda item: item[0].key)
        with tempfile.TemporaryDirectory(prefix="metalcast-models-") as tmp:
            path = Path(tmp) / MODELS_TAR
            with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
                for model, data in fetched:
                    info = tarfile.TarInfo(model.key)
                    info.size = len(data)
                    info.mode = 0o644
                    tar.addfile(info, io.BytesIO(data))
            self.client.upload_file(
                str(path), self.bucket, self.models_key(backup_id), Config=_TRANSFER
            )
        return [model for model, _ in fetched]

    def _read_models(self, backup_id: str) -> Iterator[tuple[str, bytes]]:
        with tempfile.TemporaryDirectory(prefix="metalcast-models-") as tmp:
            path = Path(tmp) / MODELS_TAR
            self.client.download_file(
                self.bucket, self.models_key(backup_id), str(path), Config=_TRANSFER
            )
            with tarfile.open(path, "r") as tar:
                for member in tar:
                    handle = tar.extractfile(member) if member.isfile() else None
                    if handle is not None:
                        yield member.name, handle.read()

    def check_models(self, backup_id: str, models: Sequence[ModelFile], workers: int) -> list[str]:
        """Recompute every model copy's sha256; the problems found."""
        if not models:
            return []
        try:
            stored = dict(self._read_models(backup_id))
        except (ClientError, tarfile.TarError) as exc:
            return [f"cannot read the model files of {backup_id}: {exc}"]
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

    def copy_models_out(
        self, models_bucket: str, backup_id: str, models: Sequence[ModelFile], workers: int
    ) -> None:
        """Put the backup's model files back into the models bucket (with their sha256 in
        the object metadata, as the trainer writes it)."""
        if not models:
            return
        wanted = {m.key: m for m in models}
        stored = {k: v for k, v in self._read_models(backup_id) if k in wanted}
        if missing := wanted.keys() - stored.keys():
            raise RuntimeError(f"model files missing from backup {backup_id}: {sorted(missing)}")

        def put(key: str) -> None:
            self.client.put_object(
                Bucket=models_bucket,
                Key=key,
                Body=stored[key],
                Metadata={"sha256": wanted[key].sha256},
            )

        with ThreadPoolExecutor(max_workers=min(workers, len(stored))) as pool:
            list(pool.map(put, sorted(stored)))

    # --- deletion -------------------------------------------------------------------------

    def _keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def delete_backup(self, backup_id: str) -> int:
        """Delete every object of a backup; the manifest last. Returns how many."""
        root = self.root(backup_id)
        manifest = self.manifest_key(backup_id)
        keys = [k for k in self._keys(root) if k != manifest]
        for start in range(0, len(keys), 1000):
            chunk: list[ObjectIdentifierTypeDef] = [{"Key": k} for k in keys[start : start + 1000]]
            result = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk})
            if errors := result.get("Errors"):
                raise RuntimeError(f"could not delete {len(errors)} objects of {backup_id}")
        self.client.delete_object(Bucket=self.bucket, Key=manifest)
        return len(keys) + 1

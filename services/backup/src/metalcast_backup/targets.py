"""Every place a backup is written to: the backups bucket (``primary``) and, when configured,
the off-box bucket (``offsite``), each a :class:`BackupStore` on its own client, with the same
layout. A backup is written to all of them and is complete only once it is on each.

Reading is tolerant: a manifest or a file is read from the first target that has it, so
verify, restore and list work from the off-box copy when the primary is gone (its bucket
deleted, its server unreachable). Writing is strict: a target that fails fails the backup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from metalcast_backup.errors import RefusedError
from metalcast_backup.manifest import Manifest, TargetInfo
from metalcast_backup.offsite import protect_bucket
from metalcast_backup.store import BackupStore

log = logging.getLogger("metalcast.backup")

PRIMARY = "primary"
OFFSITE = "offsite"
# What an unreachable or refusing S3 raises.
S3Errors = (ClientError, BotoCoreError)
T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    store: BackupStore
    # Object lock days to ask of the bucket; None: a bucket we do not manage (the primary's,
    # created by the stack or compose's minio-init).
    lock_days: int | None = None

    @property
    def name(self) -> str:
        return self.store.name

    def prepare(self) -> TargetInfo:
        """Where the copy goes and what protects it there (off-box: made sure of first)."""
        store = self.store
        info = TargetInfo(
            name=store.name,
            endpoint_url=store.endpoint_url,
            bucket=store.bucket,
            prefix=store.prefix,
        )
        if self.lock_days is None:
            return info
        protection = protect_bucket(store.client, store.bucket, lock_days=self.lock_days)
        return info.model_copy(
            update={"versioning": protection.versioning, "object_lock": protection.object_lock}
        )


@dataclass(frozen=True)
class Targets:
    targets: tuple[Target, ...]

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError("a backup needs at least one target")

    @property
    def stores(self) -> list[BackupStore]:
        return [t.store for t in self.targets]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.targets]

    @property
    def primary(self) -> BackupStore:
        return self.targets[0].store

    def only(self, name: str | None) -> Targets:
        """These targets, or just the one named (``--source offsite``)."""
        if name is None:
            return self
        chosen = tuple(t for t in self.targets if t.name == name)
        if not chosen:
            raise RefusedError(f"no backup target {name!r}; configured: {', '.join(self.names)}")
        return Targets(chosen)

    def _each(self, work: Callable[[Target], T]) -> list[T]:
        """``work`` on every target at once; the first error (naming its target) is raised."""
        with ThreadPoolExecutor(max_workers=len(self.targets)) as pool:
            futures = [(t, pool.submit(work, t)) for t in self.targets]
        out = []
        for target, future in futures:
            try:
                out.append(future.result())
            except Exception as exc:
                raise RuntimeError(f"target {target.name} ({target.store.bucket}): {exc}") from exc
        return out

    # --- writing: every target ----------------------------------------------------------

    def prepare(self) -> list[TargetInfo]:
        return self._each(Target.prepare)

    def write_manifest(self, manifest: Manifest) -> None:
        self._each(lambda t: t.store.write_manifest(manifest))

    def upload(self, backup_id: str, filename: str, path: Path) -> None:
        self._each(lambda t: t.store.upload(backup_id, filename, path))

    def update_manifest(self, manifest: Manifest) -> list[str]:
        """Rewrite ``manifest`` on every target that holds that backup (a verification, a
        failure); never creates it elsewhere. Targets that fail are logged. Their names."""
        written = []
        for store, found in self.find(manifest.backup_id):
            if found is None:
                continue
            try:
                store.write_manifest(manifest)
                written.append(store.name)
            except S3Errors as exc:
                log.warning(
                    "could not update the manifest of %s on %s: %s",
                    manifest.backup_id,
                    store.name,
                    exc,
                )
        return written

    def delete_backup(self, backup_id: str) -> None:
        """Delete the backup from every target that holds it."""

        def delete(target: Target) -> None:
            store = target.store
            if store.read_manifest(backup_id) is None and backup_id not in store.backup_ids():
                return
            store.delete_backup(backup_id)

        self._each(delete)

    # --- reading: the first target that has it -------------------------------------------

    def find(self, backup_id: str) -> list[tuple[BackupStore, Manifest | None]]:
        """Each reachable target with its manifest of ``backup_id`` (None: not there)."""
        out = []
        for store in self.stores:
            try:
                out.append((store, store.read_manifest(backup_id)))
            except S3Errors as exc:
                log.warning("target %s unreadable: %s", store.name, exc)
        return out

    def source(self, backup_id: str) -> tuple[BackupStore, Manifest] | None:
        """The first target holding a complete copy (else the first holding any manifest)."""
        found = [(s, m) for s, m in self.find(backup_id) if m is not None]
        for store, manifest in found:
            if manifest.status == "complete":
                return store, manifest
        return found[0] if found else None

    def catalogue(self, *, strict: bool = False) -> dict[str, list[tuple[str, Manifest | None]]]:
        """Every target's backups (id, manifest), by target name. An unreachable target is
        left out (logged), or raises with ``strict``; a missing bucket holds none."""
        out = {}
        for store in self.stores:
            try:
                out[store.name] = store.manifests()
            except S3Errors as exc:
                if strict:
                    raise RuntimeError(f"target {store.name} ({store.bucket}): {exc}") from exc
                log.warning("target %s unreadable: %s", store.name, exc)
        return out

    def manifests(self) -> list[Manifest]:
        """One manifest per backup (from the first target that has it), oldest first."""
        return merged(self.catalogue())

    def holders(self) -> dict[str, list[str]]:
        """Backup id -> the targets holding a manifest for it."""
        out: dict[str, list[str]] = {}
        for name, listed in self.catalogue().items():
            for backup_id, manifest in listed:
                if manifest is not None:
                    out.setdefault(backup_id, []).append(name)
        return out


def merged(catalogue: dict[str, list[tuple[str, Manifest | None]]]) -> list[Manifest]:
    chosen: dict[str, Manifest] = {}
    for listed in catalogue.values():
        for backup_id, manifest in listed:
            if manifest is not None and backup_id not in chosen:
                chosen[backup_id] = manifest
    return [chosen[k] for k in sorted(chosen)]

"""A backup's stored files (``database.dump``, ``models.tar``) between a target and a local
folder: encrypted and hashed on the way out, checked and decrypted on the way in, and every
other target's copy compared with the manifest."""

from __future__ import annotations

from pathlib import Path

from metalcast_backup.crypto import ALGORITHM, CHUNK_BYTES, KeyRing
from metalcast_backup.errors import CopyError, DecryptionError
from metalcast_backup.manifest import EncryptionInfo, Manifest, StoredFile
from metalcast_backup.store import DUMP, MODELS_TAR, BackupStore, sha256_file
from metalcast_backup.targets import S3Errors, Targets

FILES = (DUMP, MODELS_TAR)


def encryption_info(keys: KeyRing) -> EncryptionInfo:
    return EncryptionInfo(algorithm=ALGORITHM, key_id=keys.key_id, chunk_bytes=CHUNK_BYTES)


def seal(keys: KeyRing | None, plain: Path) -> Path:
    """The file to store: ``plain`` itself, or its encryption beside it (``.enc``)."""
    if keys is None:
        return plain
    sealed = plain.with_name(plain.name + ".enc")
    keys.encrypt_file(plain, sealed)
    plain.unlink()
    return sealed


def stored_file(name: str, path: Path) -> StoredFile:
    return StoredFile(name=name, size_bytes=path.stat().st_size, sha256=sha256_file(path))


def fetch(
    store: BackupStore, manifest: Manifest, filename: str, dest: Path, keys: KeyRing | None
) -> None:
    """Download ``filename`` of the backup from ``store`` into ``dest``, as it was before it
    was stored: its stored sha256 checked first (when the manifest has it), then decrypted
    (when the backup is encrypted). :class:`CopyError` if it is not what the manifest says."""
    encrypted = manifest.encryption is not None
    if encrypted and keys is None:
        assert manifest.encryption is not None
        raise DecryptionError(
            f"backup {manifest.backup_id} is encrypted with key {manifest.encryption.key_id}: "
            "set METALCAST_BACKUP__ENCRYPTION_KEY (or __OLD_ENCRYPTION_KEYS) to that key"
        )
    raw = dest.with_name(dest.name + ".enc") if encrypted else dest
    store.download(manifest.backup_id, filename, raw)
    expected = {f.name: f for f in manifest.stored}.get(filename)
    if expected is not None and (digest := sha256_file(raw)) != expected.sha256:
        raise CopyError(
            f"{filename} of {manifest.backup_id} on {store.name}: sha256 {digest}, manifest "
            f"says {expected.sha256}"
        )
    if keys is not None and encrypted:
        keys.decrypt_file(raw, dest)
        raw.unlink()


def check_copies(targets: Targets, manifest: Manifest, *, besides: BackupStore) -> list[str]:
    """Every target the backup was written to (other than ``besides``, already read whole):
    it must hold the manifest and the very bytes the manifest records. The problems found."""
    problems: list[str] = []
    # A backup made before there were targets was written to the primary alone.
    written = {t.name for t in manifest.targets} or {besides.name}
    reachable = targets.find(manifest.backup_id)
    for store, found in reachable:
        if store is besides or store.name not in written:
            continue
        if found is None:
            problems.append(f"target {store.name}: backup {manifest.backup_id} is missing")
            continue
        for expected in manifest.stored:
            try:
                digest, size = store.sha256_of(manifest.backup_id, expected.name)
            except S3Errors as exc:
                problems.append(f"target {store.name}: {expected.name} unreadable ({exc})")
                continue
            if (digest, size) != (expected.sha256, expected.size_bytes):
                problems.append(
                    f"target {store.name}: {expected.name} sha256 {digest} ({size} bytes), "
                    f"manifest says {expected.sha256} ({expected.size_bytes} bytes)"
                )
    reached = {s.name for s, _ in reachable}
    problems += [
        f"target {name}: unreachable" for name in sorted(written & set(targets.names) - reached)
    ]
    return problems

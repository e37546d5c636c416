"""The backup service's errors; each message says what failed and what was kept.

BackupError
├── BackupFailed     a backup did not complete (it is marked failed; nothing deleted)
├── VerifyFailed     a backup cannot be verified, or did not restore exactly
├── RefusedError     an operation refused to run (e.g. it would overwrite the live database)
└── CopyError        a stored copy is not what its manifest says
    └── DecryptionError  an encrypted file does not decrypt (wrong key; changed or cut)
"""

from __future__ import annotations


class BackupError(RuntimeError):
    """Base of this service's errors; the message says what failed and what was kept."""


class BackupFailed(BackupError):
    pass


class VerifyFailed(BackupError):
    pass


class RefusedError(BackupError):
    """An operation refused to run (e.g. it would overwrite the live database)."""


class CopyError(BackupError):
    """A stored copy is not what its manifest says (its sha256 differs, it is missing)."""


class DecryptionError(CopyError):
    """An encrypted file does not decrypt: the key is not configured, or the bytes were
    changed or cut."""

"""The backup service's errors; each message says what failed and what was kept.

BackupError
├── BackupFailed     a backup did not complete (it is marked failed; nothing deleted)
├── VerifyFailed     a backup cannot be verified, or did not restore exactly
└── RefusedError     an operation refused to run (e.g. it would overwrite the live database)
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

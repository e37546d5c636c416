"""``metalcast-backup``: the backup service's entry point (settings from the environment)."""

from __future__ import annotations

from metalcast_backup.cli import make_app
from metalcast_backup.config import BackupSettings

app = make_app(BackupSettings)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

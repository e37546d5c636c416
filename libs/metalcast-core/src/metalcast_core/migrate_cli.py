"""``metalcast-migrate``: apply infra/migrations (compose's migrate job runs this)."""

from __future__ import annotations

import asyncio

from metalcast_core._db import migrate
from metalcast_core._logging import configure_logging
from metalcast_core._settings import ServiceSettings


def main() -> None:
    settings = ServiceSettings()
    configure_logging(settings.log_level)
    applied = asyncio.run(migrate(settings.postgres, settings.migrations_dir))
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


if __name__ == "__main__":
    main()

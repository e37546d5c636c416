"""``metalcast-bulk``: the bulk pipeline's entry point (settings from the environment)."""

from __future__ import annotations

from metalcast_bulk.cli import make_app
from metalcast_bulk.config import BulkSettings

app = make_app(BulkSettings)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""``metalcast-api``: the API's entry point (settings from the environment)."""

from __future__ import annotations

from metalcast_api.cli import make_app
from metalcast_api.config import ApiSettings

app = make_app(ApiSettings)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

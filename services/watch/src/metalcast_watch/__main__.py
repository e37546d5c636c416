"""``metalcast-watch``: the watch's entry point (settings from the environment)."""

from __future__ import annotations

from metalcast_watch.cli import make_app
from metalcast_watch.config import WatchSettings

app = make_app(WatchSettings)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

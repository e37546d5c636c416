"""``metalcast-sink``: the sink's entry point (settings from the environment)."""

from __future__ import annotations

from metalcast_sink.cli import make_app
from metalcast_sink.config import SinkSettings

app = make_app(SinkSettings)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""``metalcast-ingestor``: the ingestor's entry point (settings from the environment; compose
runs ``metalcast-ingestor schedule``)."""

from __future__ import annotations

from metalcast_ingestor.cli import make_app
from metalcast_ingestor.config import IngestorSettings

app = make_app(IngestorSettings)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

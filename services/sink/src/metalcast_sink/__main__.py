"""``metalcast-sink``: consume ``prices.ticks.v1`` into PostgreSQL until stopped."""

from __future__ import annotations

import dataclasses
import json

from metalcast_core import configure_logging, run_until_signal
from metalcast_sink.bootstrap import run_sink
from metalcast_sink.config import SinkSettings


def main() -> None:
    settings = SinkSettings()
    configure_logging(settings.log_level)
    stats = run_until_signal(lambda stop: run_sink(settings, stop=stop))
    print(json.dumps(dataclasses.asdict(stats)), flush=True)


if __name__ == "__main__":
    main()

"""``metalcast-sink``: consume ``prices.ticks.v1`` into PostgreSQL until stopped."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal

from metalcast_core import configure_logging
from metalcast_sink.bootstrap import run_sink
from metalcast_sink.config import SinkSettings


async def _serve(settings: SinkSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stats = await run_sink(settings, stop=stop)
    print(json.dumps(dataclasses.asdict(stats)), flush=True)


def main() -> None:
    settings = SinkSettings()
    configure_logging(settings.log_level)
    asyncio.run(_serve(settings))


if __name__ == "__main__":
    main()

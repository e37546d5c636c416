"""The chaos run at length: kills survived, ticks, lost, duplicated, recovery time per kill.

On a local stack of its own (a temporary folder, free ports; the download cache is shared),
``metalcast.chaos.run_chaos`` feeds known ticks at ``--rate`` for ``--seconds`` while the sink,
the trainer, the broker, PostgreSQL and MinIO are each killed (SIGKILL) and started again,
``--rounds`` times each, at random moments after the first write; poison messages are injected
and a backup is restored into the live database mid-stream. It prints the counts and, per
kill, how long after the restart new ticks were stored again. Exit status 1 if a count fails.

Usage: ``uv run python bench/bench_chaos.py [--seconds 300] [--rate 200] [--rounds 3]``.
The machine is small and shared: the recovery times include waiting for CPU; the load average
at start and end is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path

from metalcast import chaos, stack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--rate", type=float, default=200, help="ticks per second")
    parser.add_argument("--rounds", type=int, default=3, help="kills of each part")
    parser.add_argument("--poison", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("metalcast.chaos").setLevel(logging.INFO)
    plan = chaos.ChaosPlan(
        seconds=args.seconds,
        rate=args.rate,
        kills=chaos.TARGETS * args.rounds,
        poison=args.poison,
        seed=args.seed,
    )
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="metalcast-chaos-") as tmp:
        Path(tmp).chmod(0o755)  # PostgreSQL runs as 'nobody', which must enter the folder
        config = chaos.private_config(Path(tmp) / "stack")
        try:
            report = asyncio.run(chaos.run_chaos(plan, config, Path(tmp) / "work"))
        finally:
            stack.down(config, purge=True)
    chaos.print_report(report)
    recovered = [k.recovered_s for k in report.kills if k.recovered_s is not None]
    if recovered:
        print(
            f"recovery after a restart: median {sorted(recovered)[len(recovered) // 2]:.1f} s, "
            f"max {max(recovered):.1f} s over {len(recovered)} kills"
        )
    load_end = os.getloadavg()
    print(
        f"conditions: {os.cpu_count()} CPUs, load average (1, 5, 15 min) "
        f"{' '.join(f'{x:.2f}' for x in load_start)} at start, "
        f"{' '.join(f'{x:.2f}' for x in load_end)} at end"
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

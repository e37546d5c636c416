"""API throughput and latency: what each endpoint costs beside the bare endpoints.

One run on the local stack:
1. a database of its own, filled through the real paths (simulated backfill → Kafka → sink,
   then one trainer run), and buckets and topics of its own;
2. three servers under uvicorn, one worker each, subprocesses on 127.0.0.1: ``metalcast-api``
   as configured by default (``api.latest_cache_s`` = 1 s), ``metalcast-api`` with that cache
   off (``METALCAST_API__LATEST_CACHE_S=0``: every request queries PostgreSQL), and a bare
   FastAPI app returning a constant JSON list;
3. load from a further process on loopback: ``wrk`` (Debian's package; installed with
   ``apt-get`` when missing and running as root, and the output says so). When wrk cannot be
   had, a bounded asyncio/httpx generator in a subprocess, and every line says its figures
   are the Python generator's limit as much as the API's. Each measurement is bounded in time
   (``--seconds``, at most 60) and connections (at most 256), after a 2 s warm-up.

Prints requests/s, p50, p99 and the 1-minute load average after each of:

* the bare FastAPI JSON app, and ``GET /healthz`` of the API (its middleware, no I/O): the
  baselines;
* ``GET /v1/prices/latest`` cached (at most one query per second) and uncached (one query
  per request);
* ``GET /v1/prices/XAU/history``: the default 7 days, an uncached query per request;
* ``GET /v1/forecasts/XAU?horizon=24`` with the model in memory;

with ratios to both baselines and the aims (cached latest ≥ 0.6 x bare; forecast p99 ≤ 50 ms),
plus the conditions: cores, load average before and after, the load generator and its
version. JSON also goes to ``bench/results/bench_api.json``.

Usage: ``uv run python bench/bench_api.py [--seconds 10] [--connections 16]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metalcast.stack.world import World

ROOT = Path(__file__).resolve().parents[1]
BARE_BODY = [{"symbol": s, "price": 1.0, "source": "bare"} for s in ("XAU", "XAG", "XPT", "XPD")]


def bare_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/bare")
    async def bare() -> list[dict[str, Any]]:
        return BARE_BODY

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_http(url: str, timeout_s: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer")


# --- load -----------------------------------------------------------------------------------

WRK_INSTALL_TIMEOUT_S = 600
PYTHON_TOOL = "python-httpx"


def ensure_wrk() -> tuple[str | None, str]:
    """wrk's path and a line saying where it came from; ``(None, why not)`` when it cannot
    be had. Missing wrk is installed from Debian's package (``apt-get update``, then
    ``apt-get install -y wrk``) when running as root, bounded in time."""
    found = shutil.which("wrk")
    if found:
        return found, f"wrk found at {found}"
    if os.name != "posix" or os.geteuid() != 0:
        return None, "wrk is not installed and this is not root: cannot apt-get install it"
    if not shutil.which("apt-get"):
        return None, "wrk is not installed and there is no apt-get to install it"
    print("wrk is not installed: installing Debian's wrk (apt-get update; apt-get install -y wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "wrk"],
    ):
        print("  $ " + " ".join(argv), flush=True)
        try:
            done = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=WRK_INSTALL_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            return None, f"`{' '.join(argv)}` took more than {WRK_INSTALL_TIMEOUT_S} s"
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            return None, f"`{' '.join(argv)}` failed ({done.returncode}): {tail}"
    found = shutil.which("wrk")
    if not found:
        return None, "apt-get installed wrk but it is not on PATH"
    return found, f"wrk installed by this run with apt-get ({found})"


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].split(" Copyright")[0].strip() if lines else "wrk (version unknown)"


def _wrk(wrk: str, url: str, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps, out
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    return {
        "rps": float(rps.group(1)),
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": float(sum(int(g) for g in socket_errors.groups()))
        if socket_errors
        else 0.0,
    }


async def _pyload(url: str, seconds: int, connections: int) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    bad = 0
    failed = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def worker() -> None:
            nonlocal bad, failed
            while time.perf_counter() < stop_at:
                t = time.perf_counter()
                try:
                    r = await client.get(url)
                except httpx.HTTPError:
                    failed += 1
                    continue
                latencies.append(time.perf_counter() - t)
                bad += r.status_code >= 300

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)
    return {
        "rps": n / elapsed,
        "p50_ms": latencies[n // 2] * 1000 if n else float("nan"),
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
        "non_2xx": float(bad),
        "socket_errors": float(failed),
    }


def measure(wrk: str | None, url: str, seconds: int, connections: int) -> dict[str, Any]:
    """One bounded measurement of ``url`` from a separate process; the 1-minute load average
    when it ends goes with it."""
    if wrk is not None:
        result: dict[str, Any] = {**_wrk(wrk, url, seconds, connections), "tool": "wrk"}
    else:
        # The same generator in a separate process, so it does not share the server's loop.
        code = (
            "import asyncio, json, sys; sys.path.insert(0, 'bench'); import bench_api as b; "
            f"print(json.dumps(asyncio.run(b._pyload({url!r}, {seconds}, {connections}))))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
        result = {**json.loads(out.strip().splitlines()[-1]), "tool": PYTHON_TOOL}
    result["load_1m"] = os.getloadavg()[0]
    return result


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)"


# --- the world ------------------------------------------------------------------------------


async def _prepare(world: World, hours: int) -> dict[str, str]:
    """Fill this world (a database, topics and buckets of its own) through the real paths."""
    from metalcast_ingestor import bootstrap as ingestor
    from metalcast_ingestor.config import IngestorSettings
    from metalcast_sink.bootstrap import run_sink
    from metalcast_sink.config import SinkSection, SinkSettings
    from metalcast_trainer.bootstrap import train_once
    from metalcast_trainer.config import TrainerSection, TrainerSettings

    pg, kafka, s3 = world.postgres, world.kafka, world.s3
    end = ingestor.current_hour() + timedelta(hours=1)
    await ingestor.backfill(
        IngestorSettings(postgres=pg, kafka=kafka), "simulated", end - timedelta(hours=hours), end
    )
    sink = SinkSettings(
        postgres=pg, kafka=kafka, sink=SinkSection(group_id=f"bench-{world.database}")
    )
    await run_sink(sink, until_idle=True)
    report = await train_once(
        TrainerSettings(
            postgres=pg,
            kafka=kafka,
            s3=s3,
            trainer=TrainerSection(work_dir=Path(f"/tmp/metalcast-bench-{world.database}")),
        )
    )
    assert report.status == "succeeded", report
    return world.env()


def _api_process(env: dict[str, str], port: int, latest_cache_s: float) -> subprocess.Popen[bytes]:
    api_env = {
        **os.environ,
        **{k: v for k, v in env.items() if not k.startswith("__")},
        "METALCAST_API__HOST": "127.0.0.1",
        "METALCAST_API__PORT": str(port),
        "METALCAST_API__LATEST_CACHE_S": str(latest_cache_s),
        "METALCAST_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "metalcast_api"], env=api_env, stdout=subprocess.DEVNULL
    )


def _bare_process(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench_api:bare_app",
            "--app-dir",
            str(ROOT / "bench"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    )


BARE = "bare FastAPI JSON (baseline)"
HEALTHZ = "GET /healthz (API baseline)"
LATEST_CACHED = "GET /v1/prices/latest cached"
LATEST_UNCACHED = "GET /v1/prices/latest uncached"
HISTORY = "GET /v1/prices/XAU/history uncached"
FORECAST = "GET /v1/forecasts/XAU?horizon=24"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="per measurement (max 60)")
    parser.add_argument("--connections", type=int, default=16, help="at most 256")
    parser.add_argument("--hours", type=int, default=72, help="simulated history")
    args = parser.parse_args()
    seconds = max(1, min(args.seconds, 60))
    connections = max(1, min(args.connections, 256))

    print(f"load average at start: {load_average()}", flush=True)
    wrk, origin = ensure_wrk()
    if wrk is not None:
        tool = f"{wrk_version(wrk)} (-t1, separate process)"
        print(f"load generator: {tool}; {origin}")
    else:
        tool = f"{PYTHON_TOOL} (FALLBACK: {origin})"
        print(f"load generator: {tool}")
        print(
            "  the figures below measure a Python load generator as much as the API: "
            "compare them with each other, not with wrk's"
        )

    from metalcast import stack
    from metalcast.stack.world import isolated_world

    print("preparing data through ingest → sink → trainer …", flush=True)
    stack.up()
    runner = asyncio.Runner()
    own = isolated_world(label="bench_api")
    env = runner.run(_prepare(runner.run(own.__aenter__()), args.hours))
    cached_port, uncached_port, bare_port = _free_port(), _free_port(), _free_port()
    procs = [
        _api_process(env, cached_port, 1.0),
        _api_process(env, uncached_port, 0.0),
        _bare_process(bare_port),
    ]
    results: dict[str, dict[str, Any]] = {}
    try:
        api = f"http://127.0.0.1:{cached_port}"
        uncached = f"http://127.0.0.1:{uncached_port}"
        bare = f"http://127.0.0.1:{bare_port}/bare"
        for url in (f"{api}/healthz", f"{uncached}/healthz", bare):
            _wait_http(url)
        import httpx

        warm = httpx.get(f"{api}/v1/forecasts/XAU?horizon=24", timeout=120)  # loads the model
        assert warm.status_code == 200, warm.text
        assert httpx.get(f"{api}/v1/forecasts/XAU?horizon=24").json()["cached"] is True
        latest = httpx.get(f"{uncached}/v1/prices/latest").json()
        points = httpx.get(f"{api}/v1/prices/XAU/history").json()["points"]
        assert latest, "no latest prices"
        assert points, "no history"
        targets = {
            BARE: bare,
            HEALTHZ: f"{api}/healthz",
            LATEST_CACHED: f"{api}/v1/prices/latest",
            LATEST_UNCACHED: f"{uncached}/v1/prices/latest",
            HISTORY: f"{api}/v1/prices/XAU/history",
            FORECAST: f"{api}/v1/forecasts/XAU?horizon=24",
        }
        print(f"load average before measuring: {load_average()}", flush=True)
        for name, url in targets.items():
            measure(wrk, url, 2, connections)  # warm-up, not counted
            results[name] = measure(wrk, url, seconds, connections)
            print(f"  {name}: {results[name]['rps']:.0f} req/s", flush=True)
        after = load_average()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        runner.run(own.__aexit__(None, None, None))
        runner.close()

    bare_rps, healthz_rps = results[BARE]["rps"], results[HEALTHZ]["rps"]
    print(
        f"\nconditions: one uvicorn worker per server, {connections} connections, {seconds} s "
        f"per line after a 2 s warm-up, loopback (127.0.0.1), {os.cpu_count()} cores shared by "
        f"servers, PostgreSQL and load generator; Python {platform.python_version()}"
    )
    print(f"load generator: {tool}")
    print(f"load average after measuring: {after}")
    print(
        f"latest: `cached` = api.latest_cache_s 1 s (one query per second at most), `uncached` = "
        f"a second API process with latest_cache_s 0 (one query per request, {len(latest)} "
        f"rows); history: the default 7 days of XAU, {len(points)} hourly points, a query per "
        "request (history has no cache)"
    )
    header = f"{'endpoint':<38}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'x bare':>8}{'x healthz':>10}"
    print(f"{header}{'errors':>8}{'load 1m':>9}")
    for name, r in results.items():
        errors = r["non_2xx"] + r.get("socket_errors", 0.0)
        print(
            f"{name:<38}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['rps'] / bare_rps:>8.2f}{r['rps'] / healthz_rps:>10.2f}"
            f"{errors:>8.0f}{r['load_1m']:>9.2f}"
        )
    ratio = results[LATEST_CACHED]["rps"] / bare_rps
    speedup = results[LATEST_CACHED]["rps"] / results[LATEST_UNCACHED]["rps"]
    p99 = results[FORECAST]["p99_ms"]
    print(f"\nthe 1 s cache makes latest prices {speedup:.1f}x faster than a query per request")
    verdict = "met" if ratio >= 0.6 else "NOT met"
    print(f"cached latest prices / bare = {ratio:.2f} (aim ≥ 0.60): {verdict}")
    print(f"forecast p99 = {p99:.1f} ms (aim ≤ 50 ms): {'met' if p99 <= 50 else 'NOT met'}")
    if wrk is None:
        print(f"NOTE: measured with the Python fallback, not wrk ({origin})")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    conditions = {
        "connections": connections,
        "seconds": seconds,
        "cores": os.cpu_count(),
        "load_generator": tool,
        "load_average_after": after,
        "python": platform.python_version(),
    }
    (out / "bench_api.json").write_text(
        json.dumps({"conditions": conditions, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()

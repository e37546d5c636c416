"""API throughput and latency: latest prices and a 24-step forecast beside a bare endpoint.

One run on the local stack:
1. a database of its own, filled through the real paths (simulated backfill → Kafka → sink,
   then one trainer run), and buckets and topics of its own;
2. ``metalcast-api`` under uvicorn with one worker (a subprocess on 127.0.0.1), and a bare
   FastAPI app returning a constant JSON list under uvicorn with one worker (another
   subprocess): the baseline;
3. load from a further process on loopback: ``wrk`` (Debian's) when installed, otherwise a
   bounded asyncio/httpx load generator in a subprocess; each measurement is bounded in time.

Prints requests/s, p50 and p99 for: the bare endpoint, GET /v1/prices/latest, and
GET /v1/forecasts/XAU?horizon=24 (model already cached), with the ratios the issue asks for
(aims: latest ≥ 0.6 x bare; forecast p99 ≤ 50 ms). JSON also goes to bench/results/.

Usage: ``uv run python bench/bench_api.py [--seconds 10] [--connections 16]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

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


def _wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
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

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


async def _pyload(url: str, seconds: int, connections: int) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    bad = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def worker() -> None:
            nonlocal bad
            while time.perf_counter() < stop_at:
                t = time.perf_counter()
                r = await client.get(url)
                latencies.append(time.perf_counter() - t)
                bad += r.status_code >= 300

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)
    return {
        "rps": n / elapsed,
        "p50_ms": latencies[n // 2] * 1000,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000,
        "non_2xx": float(bad),
    }


def measure(url: str, seconds: int, connections: int) -> dict[str, float]:
    if shutil.which("wrk"):
        return {**_wrk(url, seconds, connections), "tool": "wrk"}  # type: ignore[dict-item]
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
    return {**json.loads(out.strip().splitlines()[-1]), "tool": "python-httpx"}


# --- the world ------------------------------------------------------------------------------


async def _prepare(hours: int) -> dict[str, str]:
    """A database, topics and buckets of their own, filled through the real paths."""
    import asyncpg

    from metalcast import stack
    from metalcast_core import (
        KafkaSettings,
        PostgresSettings,
        S3Settings,
        ensure_buckets,
        ensure_topics,
        make_s3_client,
        migrate,
    )
    from metalcast_ingestor import bootstrap as ingestor
    from metalcast_ingestor.config import IngestorSettings
    from metalcast_sink.bootstrap import run_sink
    from metalcast_sink.config import SinkSection, SinkSettings
    from metalcast_trainer.bootstrap import train_once
    from metalcast_trainer.config import TrainerSection, TrainerSettings

    stack.up()
    env = stack.env()
    suffix = uuid.uuid4().hex[:8]
    db = f"bench_api_{suffix}"
    server = PostgresSettings(url=env["METALCAST_POSTGRES__URL"])
    admin = await asyncpg.connect(server.with_database("postgres").url)
    try:
        await admin.execute(f'CREATE DATABASE "{db}"')
    finally:
        await admin.close()
    pg = server.with_database(db)
    await migrate(pg, ROOT / "infra" / "migrations")
    kafka = KafkaSettings(
        bootstrap_servers=env["METALCAST_KAFKA__BOOTSTRAP_SERVERS"], topic_prefix=f"b{suffix}."
    )
    await ensure_topics(kafka)
    s3 = S3Settings(
        endpoint_url=env["METALCAST_S3__ENDPOINT_URL"],
        access_key_id=env["METALCAST_S3__ACCESS_KEY_ID"],
        secret_access_key=env["METALCAST_S3__SECRET_ACCESS_KEY"],
        models_bucket=f"bench-{suffix}-models",
        backups_bucket=f"bench-{suffix}-backups",
    )
    ensure_buckets(make_s3_client(s3), s3)

    end = ingestor.current_hour() + timedelta(hours=1)
    await ingestor.backfill(
        IngestorSettings(postgres=pg, kafka=kafka), "simulated", end - timedelta(hours=hours), end
    )
    sink = SinkSettings(postgres=pg, kafka=kafka, sink=SinkSection(group_id=f"bench-{suffix}"))
    await run_sink(sink, until_idle=True)
    report = await train_once(
        TrainerSettings(
            postgres=pg,
            kafka=kafka,
            s3=s3,
            trainer=TrainerSection(work_dir=Path(f"/tmp/metalcast-bench-{suffix}")),
        )
    )
    assert report.status == "succeeded", report
    return {
        **env,
        "METALCAST_POSTGRES__URL": pg.url,
        "METALCAST_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "METALCAST_S3__MODELS_BUCKET": s3.models_bucket,
        "METALCAST_S3__BACKUPS_BUCKET": s3.backups_bucket,
        "__DB__": db,
        "__ADMIN__": server.with_database("postgres").url,
    }


async def _drop(admin_url: str, db: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="per measurement (max 60)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--hours", type=int, default=72, help="simulated history")
    args = parser.parse_args()
    seconds = max(1, min(args.seconds, 60))

    print("preparing data through ingest → sink → trainer …", flush=True)
    env = asyncio.run(_prepare(args.hours))
    api_port, bare_port = _free_port(), _free_port()
    api_env = {
        **os.environ,
        **{k: v for k, v in env.items() if not k.startswith("__")},
        "METALCAST_API__HOST": "127.0.0.1",
        "METALCAST_API__PORT": str(api_port),
        "METALCAST_LOG_LEVEL": "WARNING",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "metalcast_api"], env=api_env, stdout=subprocess.DEVNULL
        ),
        subprocess.Popen(
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
                str(bare_port),
                "--workers",
                "1",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
        ),
    ]
    results: dict[str, dict[str, float]] = {}
    try:
        api = f"http://127.0.0.1:{api_port}"
        bare = f"http://127.0.0.1:{bare_port}/bare"
        _wait_http(f"{api}/healthz")
        _wait_http(bare)
        import httpx

        warm = httpx.get(f"{api}/v1/forecasts/XAU?horizon=24", timeout=120)  # loads the model
        assert warm.status_code == 200, warm.text
        assert httpx.get(f"{api}/v1/forecasts/XAU?horizon=24").json()["cached"] is True
        targets = {
            "bare FastAPI JSON": bare,
            "GET /v1/prices/latest": f"{api}/v1/prices/latest",
            "GET /v1/forecasts/XAU?horizon=24": f"{api}/v1/forecasts/XAU?horizon=24",
        }
        for name, url in targets.items():
            measure(url, 2, args.connections)  # warm-up, not counted
            results[name] = measure(url, seconds, args.connections)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        asyncio.run(_drop(env["__ADMIN__"], env["__DB__"]))

    base_rps = results["bare FastAPI JSON"]["rps"]
    tool = next(iter(results.values()))["tool"]
    print(
        f"\none uvicorn worker each, {args.connections} connections, {seconds} s per line, "
        f"load: {tool} (separate process), loopback, {os.cpu_count()} cores shared"
    )
    print(f"{'endpoint':<36}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'x bare':>8}{'non-2xx':>9}")
    for name, r in results.items():
        print(
            f"{name:<36}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['rps'] / base_rps:>8.2f}{r['non_2xx']:>9.0f}"
        )
    latest = results["GET /v1/prices/latest"]["rps"] / base_rps
    p99 = results["GET /v1/forecasts/XAU?horizon=24"]["p99_ms"]
    verdict = "met" if latest >= 0.6 else "NOT met"
    print(f"\nlatest prices / bare = {latest:.2f} (aim ≥ 0.60): {verdict}")
    print(f"forecast p99 = {p99:.1f} ms (aim ≤ 50 ms): {'met' if p99 <= 50 else 'NOT met'}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_api.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

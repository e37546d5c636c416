"""The bulk pipeline's figures: each stage's time and peak memory, beside pandas doing the same
work on the same machine in the same run, beside the original's recorded 76 s / 174 s / 363 s,
and on Spark (local[2]); then ``/predict`` requests/s and p99 with one uvicorn worker beside a
bare endpoint.

1. ``bench/bulk_data.py`` writes Kaggle-shaped data (default 8,000 symbols, ~28M rows, gaps,
   corrupt files and absurd values) into ``bench/results/bulk-data-<symbols>`` (kept for the
   next run: the same arguments give the same files).
2. Every stage runs in a process of its own (``--stage ENGINE:STAGE``), so each figure is that
   stage alone: wall seconds, CPU seconds (user + system, the process and every descendant:
   the figure a busy shared machine disturbs least), and the peak RSS of the process and its
   children (the JVM and Spark's Python workers) summed, sampled every 0.1 s.
   - polars (``metalcast_bulk``, the default engine): ingest, features, train;
   - pandas, the same work written the way a pandas user would (the same validation rules,
     ``groupby().rolling('30D')``, the same LightGBM fit on a pandas frame), batch by batch
     like ours so that it fits in memory;
   - Spark, ``local[2]``: ingest and features (training reads its features the same way).
3. ``/predict``: a database, buckets and topics of their own on the local stack (started if
   needed), the model trained and recorded there, ``metalcast-api`` (one worker) and a bare
   FastAPI app returning an integer, loaded by wrk (``bench_api.ensure_wrk``) for
   ``--seconds`` each.

Prints a table and writes ``bench/results/bench_bulk.json``. Not a timed test: one run; the
machine may be shared (the load average is printed before and after).

Usage: ``uv run python bench/bench_bulk.py [--symbols 8000] [--skip-pandas] [--skip-spark]
[--skip-api] [--seconds 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ORIGINAL = {"ingest": 76.0, "features": 174.0, "train": 363.0}
STAGES = ("ingest", "features", "train")


# --- one stage, in its own process --------------------------------------------------------


def _tree_rss_kib(pid: int, cpu_seen: dict[int, float]) -> int:
    """The RSS of ``pid`` and its descendants summed; records each one's own CPU seconds so
    far in ``cpu_seen`` (a JVM that its parent never waits for is missing from rusage; the
    last 0.1 s of a process is missing from this)."""
    import psutil  # type: ignore[import-untyped]

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += int(p.memory_info().rss) // 1024
            times = p.cpu_times()
            cpu_seen[p.pid] = (
                times.user + times.system + times.children_user + times.children_system
            )
        except psutil.Error:
            continue
    return total


def _settings(data: Path, engine: str) -> Any:
    from metalcast_bulk.config import BulkSection, BulkSettings

    return BulkSettings(
        bulk=BulkSection(
            data_url=str(data / f"out-{engine}"),
            engine="spark" if engine == "spark" else "polars",
            work_dir=data / f"work-{engine}",
        )
    )


def run_stage(engine: str, stage: str, data: Path) -> dict[str, Any]:
    """What ``--stage ENGINE:STAGE`` runs (in a child process)."""
    if engine == "pandas":
        import pandas_pipeline  # type: ignore[import-not-found]  # bench/, on PYTHONPATH

        return dict(pandas_pipeline.STAGES[stage](data / "input", data / "out-pandas"))
    from metalcast_bulk.bootstrap import build_service

    service = build_service(_settings(data, engine), s3=None)
    try:
        if stage == "ingest":
            result = service.ingest(str(data / "input"), save_report=False)
            return {"rows": result.report.rows_good, "quarantined": result.report.rows_quarantined}
        if stage == "features":
            done = service.features()
            return {"rows": done.rows}
        trained, _ = service.train(register=False)
        return {"n_train": trained.n_train, "n_test": trained.n_test, **trained.metrics}
    finally:
        stop = getattr(service.engine, "stop", None)
        if stop is not None:
            stop()


def measure_stage(engine: str, stage: str, data: Path) -> dict[str, Any]:
    """Run one stage in a child process; its seconds, peak tree RSS and what it reported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "bench")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--stage", f"{engine}:{stage}", "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    peak = 0
    cpu_seen: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_kib(proc.pid, cpu_seen))
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate(timeout=3600)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stop.set()
    sampler.join()
    waited = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    cpu = max(waited, sum(cpu_seen.values()))
    if proc.returncode != 0:
        return {"engine": engine, "stage": stage, "error": f"exit {proc.returncode}"}
    reported = json.loads(out.decode().strip().splitlines()[-1])
    peak = max(peak, int(reported.pop("_maxrss_kib", 0)))
    return {
        "engine": engine,
        "stage": stage,
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu, 1),
        "peak_rss_mib": round(peak / 1024),
        **reported,
    }


# --- /predict ------------------------------------------------------------------------------


def bare_int_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/bare")
    async def bare(vol_moving_avg: float, adj_close_rolling_med: float) -> int:
        return 10350

    return app


async def _prepare_api(data: Path) -> dict[str, str]:
    import asyncpg

    from metalcast import stack
    from metalcast_bulk.bootstrap import build_service
    from metalcast_core import (
        KafkaSettings,
        PostgresSettings,
        S3Settings,
        ensure_buckets,
        ensure_topics,
        make_s3_client,
        migrate,
    )

    stack.up()
    env = stack.env()
    suffix = uuid.uuid4().hex[:8]
    db = f"bench_bulk_{suffix}"
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
    settings = _settings(data, "polars").model_copy(
        update={"postgres": pg, "kafka": kafka, "s3": s3}
    )
    service = build_service(settings)
    await asyncio.to_thread(service.train, None, True)
    return {
        **env,
        "METALCAST_POSTGRES__URL": pg.url,
        "METALCAST_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "METALCAST_S3__MODELS_BUCKET": s3.models_bucket,
        "METALCAST_S3__BACKUPS_BUCKET": s3.backups_bucket,
        "__DB__": db,
        "__ADMIN__": server.with_database("postgres").url,
    }


def bench_api(data: Path, seconds: int, connections: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_api as ba  # type: ignore[import-not-found]  # bench/

    wrk, origin = ba.ensure_wrk()
    env = asyncio.run(_prepare_api(data))
    api_port, bare_port = ba._free_port(), ba._free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "metalcast_api"],
        env={
            **os.environ,
            **{k: v for k, v in env.items() if not k.startswith("__")},
            "METALCAST_API__HOST": "127.0.0.1",
            "METALCAST_API__PORT": str(api_port),
            "METALCAST_LOG_LEVEL": "WARNING",
        },
        stdout=subprocess.DEVNULL,
    )
    bare = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench_bulk:bare_int_app",
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
        ]
    )
    query = "vol_moving_avg=12345&adj_close_rolling_med=25"
    out: dict[str, Any] = {"load_generator": origin}
    try:
        ba._wait_http(f"http://127.0.0.1:{bare_port}/bare?{query}")
        ba._wait_http(f"http://127.0.0.1:{api_port}/predict?{query}")
        import httpx

        out["answer"] = httpx.get(f"http://127.0.0.1:{api_port}/predict?{query}").text
        for label, url in (
            ("bare FastAPI int (baseline)", f"http://127.0.0.1:{bare_port}/bare?{query}"),
            ("GET /healthz (API baseline)", f"http://127.0.0.1:{api_port}/healthz"),
            ("GET /predict", f"http://127.0.0.1:{api_port}/predict?{query}"),
            ("GET /v1/volume/predict", f"http://127.0.0.1:{api_port}/v1/volume/predict?{query}"),
        ):
            ba.measure(wrk, url, 2, connections)  # warm-up
            out[label] = ba.measure(wrk, url, seconds, connections)
    finally:
        for proc in (api, bare):
            proc.terminate()
            proc.wait(30)
        asyncio.run(ba._drop(env["__ADMIN__"], env["__DB__"]))
    return out


# --- the run -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=8000)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--skip-spark", action="store_true")
    parser.add_argument("--skip-api", action="store_true")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    if args.stage is not None:  # a child: one stage, its result as the last line
        engine, stage = args.stage.split(":")
        result = run_stage(engine, stage, args.data)
        usage = max(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        )
        print(json.dumps({**result, "_maxrss_kib": usage}, default=str))
        return

    import bulk_data  # type: ignore[import-not-found]  # bench/

    data = args.data or RESULTS / f"bulk-data-{args.symbols}"
    load_before = os.getloadavg()
    t = time.perf_counter()
    generated = bulk_data.generate(data / "input", args.symbols)
    print(f"data: {generated} ({time.perf_counter() - t:.0f} s, in {data / 'input'})")
    print(f"machine: {os.cpu_count()} cores, {platform.platform()}, load {load_before[0]:.2f}")
    engines = ["polars"] + ([] if args.skip_pandas else ["pandas"])
    engines += [] if args.skip_spark else ["spark"]
    results: list[dict[str, Any]] = []
    for engine in engines:
        for stage in STAGES:
            figure = measure_stage(engine, stage, data)
            results.append(figure)
            print(
                f"  {engine:<7} {stage:<9} {figure.get('seconds', '-'):>8} s  "
                f"cpu {figure.get('cpu_s', '-'):>7} s  "
                f"{figure.get('peak_rss_mib', '-'):>6} MiB  "
                + (figure.get("error") or f"rows {figure.get('rows', figure.get('n_train', '-'))}")
            )
    api: dict[str, Any] = {}
    if not args.skip_api:
        api = bench_api(data, args.seconds, args.connections)
    load_after = os.getloadavg()

    print()
    print(
        f"{'stage':<10}{'polars':>10}{'peak MiB':>10}{'pandas':>10}{'peak MiB':>10}"
        f"{'spark':>10}{'peak MiB':>10}{'original':>10}"
    )
    by = {(r["engine"], r["stage"]): r for r in results}
    totals: dict[str, float] = {}
    for stage in STAGES:
        cells = []
        for engine in ("polars", "pandas", "spark"):
            r = by.get((engine, stage), {})
            seconds = r.get("seconds")
            if isinstance(seconds, float):
                totals[engine] = totals.get(engine, 0.0) + seconds
            cells += [
                f"{seconds if seconds is not None else '-':>10}",
                f"{r.get('peak_rss_mib', '-'):>10}",
            ]
        print(f"{stage:<10}{''.join(cells)}{ORIGINAL[stage]:>10.0f}")
    peaks = {
        e: max((r.get("peak_rss_mib", 0) for r in results if r["engine"] == e), default=0)
        for e in engines
    }
    print(
        f"{'total':<10}"
        + "".join(
            f"{round(totals.get(e, 0), 1) if e in totals else '-':>10}{peaks.get(e, '-'):>10}"
            for e in ("polars", "pandas", "spark")
        )
        + f"{sum(ORIGINAL.values()):>10.0f}"
    )
    print("aim: whole pipeline <= 60 s, peak RSS <= 4096 MiB (polars)")
    for label, figure in api.items():
        if isinstance(figure, dict):
            print(
                f"  {label:<32} {figure['rps']:>9.0f} req/s  p50 {figure['p50_ms']:.2f} ms  "
                f"p99 {figure['p99_ms']:.2f} ms  non-2xx {figure['non_2xx']:.0f}"
            )
    if api:
        print(f"  /predict answered {api['answer']}; load: {api['load_generator']}")
    print(
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min); "
        "other engineers may be using this machine"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_bulk.json").write_text(
        json.dumps(
            {
                "data": generated,
                "stages": results,
                "api": api,
                "original_s": ORIGINAL,
                "load_before": load_before,
                "load_after": load_after,
                "cores": os.cpu_count(),
            },
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()

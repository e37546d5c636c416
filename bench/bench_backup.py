"""Backup and verify time against a plain ``pg_dump`` of the same database, in one run.

Builds a scratch database (every migration applied) with N ticks (default 1,000,000) and M
model files (default 100, ~11 KB each, like sktime ARIMA zips) in scratch buckets, then times:
- plain: ``pg_dump --format=custom`` of the database into a local file (the baseline; twice,
  before and after the backups, and the mean taken);
- backup: ``metalcast_backup`` run (snapshot, counts, pg_dump, model copies, upload, manifest);
- verify: restore into a scratch database, compare counts, recompute every model's sha256;
- off the box (where the stack has its second MinIO): the same backup written to both
  targets, then also encrypted (AES-256-GCM), and their verifies.

Usage: ``uv run python bench/bench_backup.py [--ticks 1000000] [--models 100] [--repeat 2]``
(starts the stack if needed). Aim (issue): backup <= 1.3 x plain pg_dump.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr

from metalcast import stack
from metalcast.stack.world import World, isolated_world
from metalcast_backup.bootstrap import build_service
from metalcast_backup.config import BackupSection, BackupSettings, OffsiteTarget
from metalcast_backup.crypto import new_key
from metalcast_backup.dump import PgTarget
from metalcast_core import METALS, make_s3_client
from metalcast_sink.writer import copy_ticks

REPO = Path(__file__).resolve().parents[1]


async def _load(url: str, ticks: int) -> float:
    end = datetime(2026, 1, 1, tzinfo=UTC)
    conn = await asyncpg.connect(url)
    begin = time.monotonic()
    try:
        chunk = 200_000
        for start in range(0, ticks, chunk):
            records = [
                (
                    METALS[i % 4].symbol,
                    f"bench{i % 3}",
                    "spot",
                    end - timedelta(seconds=i),
                    1000.0 + (i % 1000) / 7,
                    "USD",
                    end,
                    None,
                )
                for i in range(start, min(ticks, start + chunk))
            ]
            await copy_ticks(conn, records)
        await conn.execute("ANALYZE prices.ticks")
    finally:
        await conn.close()
    return time.monotonic() - begin


def _plain_pg_dump(settings: BackupSettings) -> tuple[float, int]:
    db_args, env = PgTarget(settings.postgres.url).tool_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "plain.dump"
        begin = time.monotonic()
        subprocess.run(
            [settings.backup.tool("pg_dump"), "--format=custom", "--file", str(out), *db_args],
            env=env,
            check=True,
        )
        return time.monotonic() - begin, out.stat().st_size


async def main(ticks: int, models: int, repeat: int) -> None:
    stack.up()
    async with isolated_world(label="bench_backup") as world:
        await _measure(world, ticks, models, repeat)


async def _measure(world: World, ticks: int, models: int, repeat: int) -> None:
    s3 = world.s3
    url = world.postgres.url
    settings = BackupSettings(
        postgres=world.postgres,
        s3=s3,
        backup=BackupSection(pg_bin_dir=Path(stack.postgres_bin_dir())),
    )
    client = make_s3_client(s3)
    load_s = await _load(url, ticks)
    for i in range(models):
        metal = METALS[i % 4]
        client.put_object(
            Bucket=s3.models_bucket,
            Key=f"models/{metal.symbol}/{i // 4 + 1}/{metal.ticker}.zip",
            Body=os.urandom(11_000),
        )
    service = build_service(settings, client=client)
    plain, backups, verifies, sizes = [], [], [], {}
    for _ in range(repeat):
        seconds, sizes["plain"] = _plain_pg_dump(settings)
        plain.append(seconds)
        begin = time.monotonic()
        manifest = await service.run()
        backups.append(time.monotonic() - begin)
        sizes["dump"] = manifest.dump_bytes
        stages = manifest.durations_s
        begin = time.monotonic()
        verification = await service.verify(manifest.backup_id)
        verifies.append(time.monotonic() - begin)
        assert verification.status == "passed", verification
        seconds, sizes["plain"] = _plain_pg_dump(settings)
        plain.append(seconds)
    plain_s = statistics.mean(plain)
    backup_s = statistics.median(backups)
    verify_s = statistics.median(verifies)
    offbox = await _offbox(world, settings, repeat) if world.offsite is not None else {}
    figures = {
        "ticks": ticks,
        "model_files": models,
        "load_s": round(load_s, 2),
        "plain_pg_dump_s": round(plain_s, 3),
        "plain_pg_dump_runs_s": [round(x, 3) for x in plain],
        "backup_s": round(backup_s, 3),
        "backup_runs_s": [round(x, 3) for x in backups],
        "backup_stages_s": stages,
        "verify_s": round(verify_s, 3),
        "verify_runs_s": [round(x, 3) for x in verifies],
        "plain_dump_bytes": sizes["plain"],
        "backup_dump_bytes": sizes["dump"],
        "ratio_backup_vs_plain": round(backup_s / plain_s, 3),
        "aim": "backup <= 1.3 x plain pg_dump",
        **offbox,
    }
    print(json.dumps(figures, indent=2))
    print(
        f"\nbackup {backup_s:.2f} s vs plain pg_dump {plain_s:.2f} s: "
        f"{backup_s / plain_s:.2f} x ({'meets' if backup_s <= 1.3 * plain_s else 'misses'} "
        f"the 1.3 x aim); verify {verify_s:.2f} s"
    )

    for name in ("offsite", "offsite_encrypted"):
        if f"{name}_backup_s" in offbox:
            print(
                f"{name.replace('_', ' + ')}: backup {offbox[f'{name}_backup_s']:.2f} s "
                f"({offbox[f'{name}_backup_s'] / backup_s:.2f} x one target), verify "
                f"{offbox[f'{name}_verify_s']:.2f} s"
            )


async def _offbox(world: World, settings: BackupSettings, repeat: int) -> dict[str, Any]:
    """Backup and verify times with the off-box target, then with encryption as well."""
    assert world.offsite is not None
    o = world.offsite
    offsite = OffsiteTarget.model_validate(
        {
            "endpoint_url": o.endpoint_url,
            "access_key_id": o.access_key_id,
            "secret_access_key": o.secret_access_key,
            "region": o.region,
            "bucket": o.backups_bucket,
            "lock_days": 1,
        }
    )
    out: dict[str, Any] = {}
    for name, extra in (
        ("offsite", {"offsite": offsite}),
        ("offsite_encrypted", {"offsite": offsite, "encryption_key": SecretStr(new_key())}),
    ):
        section = settings.backup.model_copy(update=extra)
        service = build_service(settings.model_copy(update={"backup": section}))
        backups, verifies = [], []
        for _ in range(repeat):
            begin = time.monotonic()
            manifest = await service.run()
            backups.append(time.monotonic() - begin)
            begin = time.monotonic()
            verification = await service.verify(manifest.backup_id)
            verifies.append(time.monotonic() - begin)
            assert verification.status == "passed", verification
        out[f"{name}_backup_s"] = round(statistics.median(backups), 3)
        out[f"{name}_backup_runs_s"] = [round(x, 3) for x in backups]
        out[f"{name}_stages_s"] = manifest.durations_s
        out[f"{name}_verify_s"] = round(statistics.median(verifies), 3)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.ticks, args.models, args.repeat))

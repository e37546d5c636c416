"""The bulk pipeline end to end on real servers: real daily prices (and a few corrupt files)
in MinIO -> ``metalcast bulk ingest`` -> ``features`` -> ``train`` (the model recorded in the
registry in PostgreSQL, its file in S3) -> the API's ``/predict`` answering integers, the
new version served after a second training, the report shown by the API."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import polars as pl
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from metalcast_api import ApiSection, ApiSettings
from metalcast_api.app import create_app
from metalcast_bulk.cli import make_app
from metalcast_bulk.config import BulkSection, BulkSettings
from metalcast_bulk.storage import Store
from metalcast_core import KafkaSettings, PostgresSettings, S3Settings, make_s3_client
from metalcast_models import registry
from metalcast_models.volume import VOLUME_SYMBOL, VolumeModel
from tests.bulk_support import HEADER, real_market_dir
from tests.support import ServerThread

pytestmark = pytest.mark.integration
T = TypeVar("T")
runner = CliRunner()

CORRUPT = {
    "stocks/HTML.csv": b"<html><body>Too Many Requests</body></html>",
    "stocks/EMPTY.csv": b"",
    "stocks/ZZZ.csv": (
        f"{HEADER}\n2020-01-02,10,11,9,10,10,1000\n2020-01-03,10,11,9,10,-2.38e21,1000\n"
        "2020-01-06,10,11,9,10,1.9e19,1000\n2020-01-07,10,9,11,10,10,1000\n"
        "2020-01-08,10,11,9,10,10,-5\n2020-01-08,10,11,9,10,10,7\n2020-01-02,10,11,9,10,10,999\n"
    ).encode(),
}


async def _fetch(pg: PostgresSettings, sql: str, *args: object) -> list[dict[str, Any]]:
    import asyncpg

    conn = await asyncpg.connect(pg.url)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def _upload(s3: S3Settings, folder: Path, prefix: str) -> None:
    client = make_s3_client(s3)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            client.put_object(Bucket=s3.backups_bucket, Key=key, Body=path.read_bytes())
    for name, body in CORRUPT.items():
        client.put_object(Bucket=s3.backups_bucket, Key=f"{prefix}/{name}", Body=body)


def test_the_bulk_pipeline_end_to_end_on_s3_to_the_api(
    tmp_path: Path,
    pg_settings: PostgresSettings,
    s3_settings: S3Settings,
    kafka_settings: KafkaSettings,
) -> None:
    rows = real_market_dir(tmp_path / "in")
    _upload(s3_settings, tmp_path / "in", "market")
    settings = BulkSettings(
        environment="test",
        postgres=pg_settings,
        s3=s3_settings,
        kafka=kafka_settings,
        bulk=BulkSection(
            data_url=f"s3://{s3_settings.models_bucket}/bulk",
            num_boost_round=60,
            work_dir=tmp_path / "work",
        ),
    )
    app = make_app(lambda: settings)
    source = f"s3://{s3_settings.backups_bucket}/market"

    # 1. ingest from S3 into S3
    result = runner.invoke(app, ["ingest", source])
    assert result.exit_code == 0, result.output
    assert "absurd_price" in result.output
    store = Store.open(settings.bulk.data_url, s3_settings)
    run_id, files = store.current_files("prices", "data")
    prices = store.read_parquet(files)
    good_corrupt = 2  # ZZZ: 2020-01-02 and the first 2020-01-08
    assert prices.height == sum(rows.values()) + good_corrupt
    assert prices["Volume"].dtype == pl.Int64
    report = store.read_json(f"prices/runs/{run_id}/report.json")
    assert report["reasons"] == {
        "absurd_price": 2,
        "duplicate_date": 1,
        "empty_file": 1,
        "high_below_low": 1,
        "html": 1,
        "negative_volume": 1,
    }
    stored = _sync(_fetch(pg_settings, "SELECT * FROM bulk.ingest_runs"))
    assert [r["run_id"] for r in stored] == [run_id]
    assert stored[0]["rows_good"] == prices.height

    # 2. features, 3. train (recorded in the registry)
    result = runner.invoke(app, ["features"])
    assert result.exit_code == 0, result.output
    assert f"{prices.height} rows" in result.output
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 0, result.output
    assert "VOLUME v1" in result.output
    versions = _sync(_registry_versions(pg_settings))
    assert [v.version for v in versions] == [1]
    v1 = versions[0]
    assert v1.family == "lightgbm"
    assert v1.metrics["test_start"] > v1.window_end.date().isoformat()  # time split
    assert v1.in_production, v1.decision  # the first model is promoted
    assert f"vs naive {v1.metrics['baseline_mae']:.0f}" in (v1.decision or "")
    runs = _sync(_fetch(pg_settings, "SELECT trigger, status FROM ml.training_runs"))
    assert runs == [{"trigger": "bulk", "status": "succeeded"}]
    local = tmp_path / "v1"
    model = VolumeModel.load(
        registry.download_artifact(make_s3_client(s3_settings), v1.artifact_uri, local)
    )

    # 4. the API
    api = ApiSettings(
        environment="test",
        postgres=pg_settings,
        kafka=kafka_settings,
        s3=s3_settings,
        api=ApiSection(api_key=SecretStr("test-api-key-0123456789"), volume_pointer_ttl_s=0.5),
    )
    with ServerThread(create_app(api)) as server, httpx.Client(base_url=server.url) as http:
        answer = http.get("/predict", params={"vol_moving_avg": 12345, "adj_close_rolling_med": 25})
        assert answer.status_code == 200, answer.text
        assert isinstance(answer.json(), int)
        assert answer.text == str(model.predict(12345.0, 25.0))
        for vma, med in ((1e6, 30.0), (5e7, 300.0), (0.0, 0.0)):
            got = http.get("/predict", params={"vol_moving_avg": vma, "adj_close_rolling_med": med})
            assert got.json() == model.predict(vma, med)
        full = http.get(
            "/v1/volume/predict", params={"vol_moving_avg": 12345, "adj_close_rolling_med": 25}
        ).json()
        assert full == {
            "volume": answer.json(),
            "model_version": 1,
            "model_version_id": v1.id,
            "inputs": {"vol_moving_avg": 12345.0, "adj_close_rolling_med": 25.0},
        }
        cases: list[tuple[dict[str, str], str]] = [
            ({"adj_close_rolling_med": "25"}, "Field required"),
            ({"vol_moving_avg": "-1", "adj_close_rolling_med": "25"}, "greater than or equal to 0"),
            ({"vol_moving_avg": "nan", "adj_close_rolling_med": "25"}, "finite number"),
            ({"vol_moving_avg": "inf", "adj_close_rolling_med": "25"}, "finite number"),
            ({"vol_moving_avg": "lots", "adj_close_rolling_med": "25"}, "valid number"),
            ({"vol_moving_avg": "1", "adj_close_rolling_med": "-0.5"}, "greater than or equal"),
            ({"vol_moving_avg": "1e300", "adj_close_rolling_med": "25"}, "less than or equal"),
        ]
        for params, reason in cases:
            for path in ("/predict", "/v1/volume/predict"):
                bad = http.get(path, params=params)
                assert bad.status_code == 422, (path, params, bad.text)
                assert reason in bad.text, bad.text
        production = http.get("/v1/models/production").json()
        assert [(p["symbol"], p["version"]) for p in production] == [(VOLUME_SYMBOL, 1)]
        shown = http.get("/v1/bulk/ingest-runs/latest").json()
        assert shown["run_id"] == run_id
        assert shown["report"]["by_file"]["stocks/ZZZ.csv"]["absurd_price"] == 2

        # a new version promoted: served without a restart
        result = runner.invoke(app, ["train"])
        assert result.exit_code == 0, result.output
        assert "VOLUME v2" in result.output
        deadline = time.monotonic() + 20
        version = 1
        while version != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            version = http.get(
                "/v1/volume/predict", params={"vol_moving_avg": 1, "adj_close_rolling_med": 1}
            ).json()["model_version"]
        assert version == 2

    # the report command reads it back from the store
    result = runner.invoke(app, ["report", "--json"])
    assert result.exit_code == 0, result.output
    assert f'"run_id": "{run_id}"' in result.output
    assert np.isfinite(v1.metrics["mse"])


async def _registry_versions(pg: PostgresSettings) -> list[registry.VersionInfo]:
    import asyncpg

    conn = await asyncpg.connect(pg.url)
    try:
        return await registry.versions(conn, VOLUME_SYMBOL)
    finally:
        await conn.close()


def _sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from this sync test (the CLI under test runs its own event loops)."""
    out: list[T] = []

    def run() -> None:
        out.append(asyncio.run(coro))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out[0]

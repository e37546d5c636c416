"""The ``metalcast bulk`` commands on disk, no servers: options override the settings, the
report is printed and read back, a run with nothing good fails with its reason."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from metalcast_bulk.cli import make_app
from metalcast_bulk.config import BulkSection, BulkSettings
from metalcast_bulk.stages import FEATURES
from metalcast_bulk.storage import Store

runner = CliRunner()
HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"


def _input(root: Path, days: int) -> None:
    rows = [HEADER] + [
        f"2020-01-{d:02d},10,11,9,10,{10 + d / 10},{1000 + d}" for d in range(1, days + 1)
    ]
    (root / "stocks").mkdir(parents=True)
    (root / "stocks" / "AAA.csv").write_text("\n".join(rows) + "\n")
    (root / "etfs").mkdir()
    (root / "etfs" / "BAD.csv").write_text("<html>gone</html>")


def test_ingest_features_and_report_from_the_command_line(tmp_path: Path) -> None:
    _input(tmp_path / "in", 20)
    settings = BulkSettings(bulk=BulkSection(data_url=str(tmp_path / "data")))
    app = make_app(lambda: settings.model_copy(deep=True))

    result = runner.invoke(app, ["ingest", str(tmp_path / "in"), "--no-record"])
    assert result.exit_code == 0, result.output
    assert "2 files (1 clean, 1 with problems), 20 rows read: 20 good, 0 quarantined" in (
        result.output
    )
    assert "etfs/BAD.csv: html 1" in result.output

    result = runner.invoke(app, ["features", "--window", "rows", "--min-periods", "5"])
    assert result.exit_code == 0, result.output
    assert "window 30 rows, min_periods 5" in result.output
    store = Store.open(str(tmp_path / "data"))
    assert store.current(FEATURES)["window"] == {"kind": "rows", "size": 30, "min_periods": 5}
    features = store.read_parquet(store.current_files(FEATURES)[1])
    assert features["vol_moving_avg"].null_count() == 4

    result = runner.invoke(app, ["report"])
    assert result.exit_code == 0, result.output
    assert "html" in result.output

    result = runner.invoke(app, ["features", "--window", "weeks"])
    assert result.exit_code == 2
    assert "--window: Input should be 'calendar' or 'rows'" in result.output


def test_a_run_without_a_good_row_fails_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "in" / "stocks").mkdir(parents=True)
    (tmp_path / "in" / "stocks" / "X.csv").write_text("")
    settings = BulkSettings(bulk=BulkSection(data_url=str(tmp_path / "data")))
    result = runner.invoke(
        make_app(lambda: settings), ["ingest", str(tmp_path / "in"), "--no-record"]
    )
    assert result.exit_code == 1
    assert "no good rows" in result.output
    result = runner.invoke(make_app(lambda: settings), ["report"])
    assert result.exit_code == 1
    assert "has no published run yet" in result.output

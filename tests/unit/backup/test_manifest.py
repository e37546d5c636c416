"""The manifest: ids, JSON round trip, tolerant reading, row-count comparison."""

from __future__ import annotations

from datetime import UTC, datetime

from metalcast_backup.config import BackupSection
from metalcast_backup.manifest import (
    DumpInfo,
    EncryptionInfo,
    Manifest,
    ModelFile,
    StoredFile,
    TargetInfo,
    backup_time,
    compare_counts,
    is_backup_id,
    new_backup_id,
)

NOW = datetime(2026, 1, 15, 6, 0, 0, 123456, tzinfo=UTC)


def _manifest() -> Manifest:
    return Manifest(
        backup_id=new_backup_id(NOW),
        status="complete",
        started_at=NOW,
        tool_version="0.1.0",
        models_bucket="metalcast-models",
        dump=DumpInfo(
            key="backups/x/database.dump", compression="gzip:6", size_bytes=100, sha256="a" * 64
        ),
        tables={"prices.ticks": 10, "ml.model_versions": 2},
        models=[ModelFile(key="models/XAU/3/XAUUSD.zip", sha256="b" * 64, size_bytes=11)],
    )


def test_backup_ids_are_utc_timestamps_that_sort_in_time() -> None:
    backup_id = new_backup_id(NOW)
    assert backup_id == "20260115T060000.123456Z"
    assert is_backup_id(backup_id)
    assert backup_time(backup_id) == NOW
    later = new_backup_id(datetime(2026, 1, 15, 6, 0, 1, tzinfo=UTC))
    assert sorted([later, backup_id]) == [backup_id, later]
    assert not is_backup_id("../etc")


def test_json_round_trip_and_sizes() -> None:
    manifest = _manifest()
    again = Manifest.from_json(manifest.to_json())
    assert again == manifest
    assert again.total_bytes == 111
    assert again.total_rows == 12


def test_reading_ignores_fields_a_newer_writer_added() -> None:
    data = _manifest().model_dump(mode="json")
    data["something_new"] = {"x": 1}
    data["models"][0]["also_new"] = True
    assert Manifest.model_validate(data).models[0].key == "models/XAU/3/XAUUSD.zip"


def test_compare_counts_names_every_difference() -> None:
    assert compare_counts({"a.t": 1}, {"a.t": 1}) == []
    problems = compare_counts({"a.t": 1, "a.gone": 2}, {"a.t": 3, "a.extra": 0})
    assert problems == [
        "a.extra: not in the manifest (0 rows after restore)",
        "a.gone: missing after restore (expected 2 rows)",
        "a.t: 3 rows after restore, manifest says 1",
    ]


def test_prefix_always_ends_with_one_slash() -> None:
    assert BackupSection(prefix="backups").prefix == "backups/"
    assert BackupSection(prefix="/a/b//").prefix == "a/b/"


def test_where_the_backup_is_and_how_it_is_encrypted_round_trip_and_older_manifests_read() -> None:
    manifest = _manifest()
    manifest.targets = [
        TargetInfo(name="primary", endpoint_url="http://a:9000", bucket="b", prefix="backups/"),
        TargetInfo(
            name="offsite",
            endpoint_url="https://far.example",
            bucket="far",
            prefix="backups/",
            versioning="enabled",
            object_lock="GOVERNANCE 7 days",
        ),
    ]
    manifest.encryption = EncryptionInfo(
        algorithm="AES-256-GCM-STREAM", key_id="0123456789abcdef", chunk_bytes=1 << 20
    )
    manifest.stored = [StoredFile(name="database.dump", size_bytes=127, sha256="c" * 64)]
    assert Manifest.from_json(manifest.to_json()) == manifest
    # A manifest written before there were targets or encryption: one copy, in the clear.
    older = _manifest().model_dump(mode="json")
    for field in ("targets", "encryption", "stored"):
        older.pop(field)
    read = Manifest.model_validate(older)
    assert (read.targets, read.encryption, read.stored) == ([], None, [])

"""The retention rule: keep the newest N proven backups; nothing deleted unless the new one
is complete and verified."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from metalcast_backup.retention import BackupState, merge_copies, plan_retention

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _b(i: int, status: str = "complete", verified: bool | None = True) -> BackupState:
    return BackupState(f"b{i:03d}", status, T0 + timedelta(hours=6 * i), verified)


def test_keeps_the_newest_twenty_of_twenty_five() -> None:
    backups = [_b(i) for i in range(25)]
    plan = plan_retention(backups, keep=20, newest="b024")
    assert plan.keep == tuple(f"b{i:03d}" for i in range(24, 4, -1))
    assert plan.delete == ("b000", "b001", "b002", "b003", "b004")


def test_nothing_is_deleted_when_there_are_fewer_than_keep() -> None:
    plan = plan_retention([_b(i) for i in range(5)], keep=20, newest="b004")
    assert plan.delete == ()
    assert len(plan.keep) == 5


@pytest.mark.parametrize(
    ("status", "verified"),
    [("failed", None), ("running", None), ("complete", None), ("complete", False)],
)
def test_a_new_backup_that_is_not_proven_deletes_nothing(
    status: str, verified: bool | None
) -> None:
    backups = [_b(i) for i in range(25)] + [_b(25, status, verified)]
    plan = plan_retention(backups, keep=20, newest="b025")
    assert plan.delete == ()
    assert plan.keep == ()


def test_failed_and_unverified_backups_never_count_among_the_kept() -> None:
    backups = [_b(i) for i in range(21)]
    # Failures in between the proven ones, newer than the oldest proven ones.
    backups += [_b(30, "failed", None), _b(31, "complete", False), _b(32)]
    plan = plan_retention(backups, keep=20, newest="b032")
    assert len(plan.keep) == 20
    assert "b030" not in plan.keep
    assert "b031" not in plan.keep
    # b000 and b001 fall out; the newer failures stay (they are newer than the oldest kept).
    assert plan.delete == ("b000", "b001")


def test_leftovers_of_failures_older_than_the_oldest_kept_are_deleted() -> None:
    backups = [_b(0, "failed", None), *[_b(i) for i in range(1, 23)]]
    plan = plan_retention(backups, keep=20, newest="b022")
    assert plan.delete == ("b000", "b001", "b002")


def test_running_backups_are_never_deleted() -> None:
    backups = [_b(0, "running", None), *[_b(i) for i in range(1, 23)]]
    plan = plan_retention(backups, keep=20, newest="b022")
    assert "b000" not in plan.delete


def test_unknown_newest_deletes_nothing() -> None:
    assert plan_retention([_b(i) for i in range(30)], keep=20, newest="nope").delete == ()


def test_a_new_backup_older_than_keep_proven_ones_deletes_nothing() -> None:
    backups = [_b(i) for i in range(1, 25)] + [_b(0)]
    assert plan_retention(backups, keep=20, newest="b000").delete == ()


def test_keep_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_retention([], keep=0, newest="x")


# --- two targets: a backup is as good as its weakest copy ---------------------------------------


def _copies(**targets: list[BackupState]) -> dict[str, list[BackupState]]:
    return dict(targets)


def test_copies_that_agree_merge_into_one_state_each() -> None:
    both = [_b(i) for i in range(3)]
    merged = merge_copies(_copies(primary=both, offsite=both))
    assert merged == both


def test_a_copy_missing_from_a_target_makes_the_backup_failed() -> None:
    merged = merge_copies(_copies(primary=[_b(0), _b(1)], offsite=[_b(0)]))
    assert [(b.backup_id, b.status) for b in merged] == [("b000", "complete"), ("b001", "failed")]


def test_a_backup_made_before_the_offsite_target_existed_is_expected_on_the_primary_only() -> None:
    merged = merge_copies(
        _copies(primary=[_b(0), _b(1)], offsite=[_b(1)]),
        expected={"b000": {"primary"}, "b001": {"primary", "offsite"}},
    )
    assert [b.status for b in merged] == ["complete", "complete"]


@pytest.mark.parametrize(
    ("primary", "offsite", "status", "verified"),
    [
        (_b(0), _b(0, verified=None), "complete", None),
        (_b(0), _b(0, verified=False), "complete", False),
        (_b(0, verified=None), _b(0, verified=False), "complete", False),
        (_b(0), _b(0, "failed", None), "failed", None),
        (_b(0, "running", None), _b(0, "failed", None), "running", None),
    ],
)
def test_the_weakest_copy_decides(
    primary: BackupState, offsite: BackupState, status: str, verified: bool | None
) -> None:
    (merged,) = merge_copies(_copies(primary=[primary], offsite=[offsite]))
    assert (merged.status, merged.verified) == (status, verified)


def test_retention_over_two_targets_keeps_only_what_is_proven_on_both() -> None:
    # 6 backups; b003's off-box copy never verified; b001 lost its off-box copy.
    primary = [_b(i) for i in range(6)]
    offsite = [_b(0), _b(2), _b(3, verified=None), _b(4), _b(5)]
    plan = plan_retention(
        merge_copies(_copies(primary=primary, offsite=offsite)), keep=2, newest="b005"
    )
    assert plan.keep == ("b005", "b004")
    # b003 (unverified off-box) and b001 (missing off-box) do not count; all older go.
    assert plan.delete == ("b000", "b001", "b002", "b003")


def test_a_new_backup_missing_on_one_target_deletes_nothing() -> None:
    primary = [_b(i) for i in range(5)]
    offsite = [_b(i) for i in range(4)]
    plan = plan_retention(
        merge_copies(_copies(primary=primary, offsite=offsite)), keep=2, newest="b004"
    )
    assert plan.delete == ()
    assert "not complete" in plan.reason

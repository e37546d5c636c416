"""Which backups to keep: a pure function, no I/O.

The rule:
- Only *proven* backups count: complete and with a passed verification. Failed, running,
  unverified or deleted ones never count among the ``keep``.
- Nothing is deleted unless the newest backup (the one this run made) is proven. A failed
  or partial backup therefore never causes a deletion.
- The ``keep`` newest proven backups stay; older proven ones are deleted.
- Leftovers of failed or unverified backups older than the oldest kept backup are deleted
  too (their records stay, marked deleted); running ones are never touched.
- With several targets (:func:`merge_copies`), a backup is as good as its weakest copy: it
  counts only if it is complete and verified on every target it was written to.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class BackupState:
    backup_id: str
    status: str  # running | complete | failed | deleted
    started_at: datetime
    verified: bool | None = None  # None: never verified; False: a verification failed

    @property
    def proven(self) -> bool:
        return self.status == "complete" and self.verified is True


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    keep: tuple[str, ...]
    delete: tuple[str, ...]
    reason: str


def plan_retention(backups: Sequence[BackupState], *, keep: int, newest: str) -> RetentionPlan:
    """What to keep and delete after the backup ``newest`` finished."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    by_id = {b.backup_id: b for b in backups}
    new = by_id.get(newest)
    if new is None:
        return RetentionPlan((), (), f"{newest} is unknown: nothing deleted")
    if not new.proven:
        why = "not complete" if new.status != "complete" else "not verified"
        return RetentionPlan((), (), f"{newest} is {why}: nothing deleted")
    proven = sorted(
        (b for b in by_id.values() if b.proven),
        key=lambda b: (b.started_at, b.backup_id),
        reverse=True,
    )
    kept = proven[:keep]
    if new not in kept:
        # The backup just made is older than `keep` newer proven ones: odd clocks. Be safe.
        return RetentionPlan(
            tuple(b.backup_id for b in kept),
            (),
            f"{newest} is not among the newest: nothing deleted",
        )
    oldest_kept = kept[-1].started_at
    delete = [b for b in proven[keep:]]
    delete += [
        b
        for b in by_id.values()
        if not b.proven and b.status in {"complete", "failed"} and b.started_at < oldest_kept
    ]
    delete.sort(key=lambda b: (b.started_at, b.backup_id))
    return RetentionPlan(
        tuple(b.backup_id for b in kept),
        tuple(b.backup_id for b in delete),
        f"keeping the newest {len(kept)} proven backups",
    )


def merge_copies(
    copies: Mapping[str, Sequence[BackupState]],
    expected: Mapping[str, Collection[str]] | None = None,
) -> list[BackupState]:
    """One state per backup from its copies (target name -> the states found there), oldest
    first. ``expected[backup_id]`` names the targets the backup should be on (by default every
    target in ``copies``). A backup with a copy still running is running; a missing or failed
    copy makes it failed; it is complete only if every expected copy is, and verified only if
    every copy's verification passed (one failed: failed; one never verified: unverified)."""
    found: dict[str, dict[str, BackupState]] = {}
    for target, states in copies.items():
        for state in states:
            found.setdefault(state.backup_id, {})[target] = state
    merged = []
    for backup_id, by_target in found.items():
        wanted = set(copies) if expected is None else set(expected.get(backup_id, copies))
        states = list(by_target.values())
        statuses = {s.status for s in states}
        if "running" in statuses:
            status = "running"
        elif wanted - by_target.keys() or "failed" in statuses:
            status = "failed"
        elif statuses == {"complete"}:
            status = "complete"
        else:
            status = sorted(statuses - {"complete"})[0]
        verdicts = [s.verified for s in states]
        verified = False if False in verdicts else None if None in verdicts else True
        started = min(s.started_at for s in states)
        merged.append(BackupState(backup_id, status, started, verified))
    return sorted(merged, key=lambda b: (b.started_at, b.backup_id))

"""GFS retention for pgBackRest backups: drd decides, ``pgbackrest expire --set`` deletes.

pgBackRest only counts (``repo1-retention-full``); it has no hourly/daily/weekly rules.
So drd sets its count to the maximum (``stanza.py``: it never expires anything by
itself) and decides here which backup sets go:

1. every backup (full, diff, incr) is a restore point at its stop time; the tier's
   rules select the kept ones (``selection.select``);
2. a kept diff/incr needs the chain it was taken on: its ``prior`` backups are kept
   too ("needed by LABEL"), so a kept point is always restorable;
3. what is left is expired by naming the oldest expired backup of each chain
   (``expire --set=LABEL`` removes that set and everything that depends on it, all of
   which are expired by construction), skipping sets whose files are still under S3
   Object Lock ("locked until DATE").

WAL: ``expire --set`` also runs pgBackRest's archive expiration. With count retention at
its maximum every remaining backup is "in retention", so pgBackRest only removes WAL
older than the oldest remaining backup: WAL that kept backups need is never removed,
and point-in-time recovery works from the oldest kept backup to the newest archived WAL
(the "recovery window"). A test restores to a time right after the oldest kept backup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drd.config.tier import Retention
from drd.pgbackrest.info import BackupSet, StanzaInfo
from drd.pgbackrest.runner import Pgbackrest
from drd.retention.selection import RestorePoint, select


@dataclass(frozen=True)
class BackupDecision:
    label: str
    type: str
    stopped_at: datetime
    prior: str | None  # the backup a diff/incr was taken on
    keep: bool
    reasons: tuple[str, ...]  # why kept; for an expired but locked set, "locked until ..."
    locked_until: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "type": self.type,
            "stopped_at": self.stopped_at.isoformat(),
            "keep": self.keep,
            "reasons": list(self.reasons),
            "locked_until": self.locked_until.isoformat() if self.locked_until else None,
        }


@dataclass(frozen=True)
class DbRetentionPlan:
    stanza: str
    decisions: tuple[BackupDecision, ...]  # oldest first, as pgBackRest lists them
    expire: tuple[str, ...]  # labels passed to ``expire --set``, oldest first

    @property
    def kept(self) -> list[BackupDecision]:
        return [d for d in self.decisions if d.keep]

    @property
    def expired(self) -> list[BackupDecision]:
        """Every set that goes (the ``expire`` roots and their dependents)."""
        return [d for root in self.expire for d in self.chain(root)]

    def chain(self, root: str) -> list[BackupDecision]:
        """``root`` and every set that depends on it (what ``expire --set=root`` removes)."""
        gone = {root}
        for decision in self.decisions:  # oldest first: a prior comes before its dependents
            if decision.prior in gone:
                gone.add(decision.label)
        return [d for d in self.decisions if d.label in gone]

    @property
    def locked(self) -> list[BackupDecision]:
        return [d for d in self.decisions if not d.keep and d.locked_until is not None]

    @property
    def window_start(self) -> datetime | None:
        """Point-in-time recovery is possible from here (the oldest kept backup's end)."""
        survivors = [d for d in self.decisions if d not in self.expired]
        return min((d.stopped_at for d in survivors), default=None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stanza": self.stanza,
            "kept": [d.as_dict() for d in self.kept],
            "expire": list(self.expire),
            "expired": [d.label for d in self.expired],
            "locked": [d.as_dict() for d in self.locked],
            "window_start": self.window_start.isoformat() if self.window_start else None,
        }


def plan_db(
    info: StanzaInfo,
    policy: Retention,
    *,
    locked_until: Callable[[BackupSet], datetime | None] | None = None,
    now: datetime,
) -> DbRetentionPlan:
    """Which backup sets the tier keeps (and why) and which ``expire --set`` removes."""
    backups = {b.label: b for b in info.backups}
    decisions = select([RestorePoint(b.label, b.stopped_at) for b in info.backups], policy)
    reasons: dict[str, list[str]] = {d.point.id: list(d.reasons) for d in decisions}
    for decision in decisions:  # newest first: chains are closed from their kept tips
        if not decision.keep:
            continue
        prior = backups[decision.point.id].prior
        while prior is not None and prior in backups:
            reasons[prior].append(f"needed by {decision.point.id}")
            prior = backups[prior].prior
    locks: dict[str, datetime] = {}
    if locked_until is not None:
        for backup in info.backups:
            if not reasons[backup.label] and (until := locked_until(backup)) and until > now:
                locks[backup.label] = until
    # A locked set keeps its chain: expiring its prior would take it along.
    for label in list(locks):
        prior = backups[label].prior
        while prior is not None and prior in backups:
            if not reasons[prior] and prior not in locks:
                reasons[prior].append(f"needed by {label} (locked)")
            prior = backups[prior].prior
    result = tuple(
        BackupDecision(
            b.label,
            b.type,
            b.stopped_at,
            b.prior,
            keep=bool(reasons[b.label]),
            reasons=tuple(dict.fromkeys(reasons[b.label]))
            or ((f"locked until {locks[b.label].isoformat()}",) if b.label in locks else ()),
            locked_until=locks.get(b.label),
        )
        for b in info.backups
    )
    gone = {d.label for d in result if not d.keep and d.locked_until is None}
    roots = tuple(
        b.label
        for b in info.backups
        if b.label in gone and (b.prior is None or b.prior not in gone)
    )
    return DbRetentionPlan(info.name, result, roots)


def apply_db(
    pgbr: Pgbackrest,
    plan: DbRetentionPlan,
    policy: Retention,
    *,
    locked_until: Callable[[BackupSet], datetime | None] | None = None,
    now: datetime,
    on_delete: Callable[[str, str], None] | None = None,
) -> list[str]:
    """Expire what ``plan`` expires *and* a fresh plan still expires; return the labels gone.

    The repository is read again first: a set the fresh plan keeps (or finds locked),
    or whose chain changed since planning, is never expired.
    """
    fresh = plan_db(pgbr.info(), policy, locked_until=locked_until, now=now)
    gone: list[str] = []
    for root in plan.expire:
        chain = [d.label for d in fresh.chain(root)] if root in fresh.expire else []
        if not chain or chain != [d.label for d in plan.chain(root)]:
            continue  # kept, locked or changed since the plan was shown: leave it
        pgbr.run("expire", f"--set={root}")
        for label in chain:
            gone.append(label)
            if on_delete is not None:
                on_delete("backup", label)
    return gone

"""Retention for an estate: a plan that can be read before it is applied.

``plan`` reads the repositories (pgBackRest ``info``, snapshot manifests, object locks)
and returns, per workload and kind, what is kept and every rule that keeps it, what
would be deleted, what is locked ("locked until DATE") and the recovery window that
remains. It changes nothing.

``apply`` plans again, refuses when the catalog and a repository disagree about what
exists (expiring on a wrong picture is how backup tools lose data; ``drd catalog
rebuild`` reconciles), then expires database backup sets, forgets snapshots, prunes
filestore packs, updates the catalog and writes one audit entry per deletion. On
immutable tiers it finally extends the Object Lock of everything still kept, so a kept
restore point never becomes deletable while retention still promises it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from drd.catalog import Catalog
from drd.config import Estate, S3Repository
from drd.errors import SafetyError
from drd.log import get_logger
from drd.pgbackrest.info import BackupSet
from drd.pgbackrest.runner import Pgbackrest
from drd.pgbackrest.stanza import write_config
from drd.retention.db import DbRetentionPlan, apply_db, plan_db
from drd.retention.selection import Decision, RestorePoint, select

log = get_logger("drd.retention")

#: How long a prune waits for running snapshots and restores (shared locks) to finish
#: before it gives up; the daemon retries a failed retention job with backoff.
PRUNE_LOCK_WAIT = 300.0


@dataclass
class WorkloadRetention:
    workload: str
    tier: str
    repository: str
    db: DbRetentionPlan | None = None
    snapshots: list[Decision] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)

    @property
    def forget(self) -> list[str]:
        return [d.point.id for d in self.snapshots if not d.keep]

    def as_dict(self) -> dict[str, Any]:
        kept = [d for d in self.snapshots if d.keep]
        oldest = min((d.point.time for d in kept), default=None)
        return {
            "workload": self.workload,
            "tier": self.tier,
            "repository": self.repository,
            "database": self.db.as_dict() if self.db else None,
            "filestore": {
                "kept": [
                    {"id": d.point.id, "time": d.point.time.isoformat(), "reasons": d.reasons}
                    for d in kept
                ],
                "forget": self.forget,
                "window_start": oldest.isoformat() if oldest else None,
            }
            if self.snapshots
            else None,
            "disagreements": self.disagreements,
        }


@dataclass
class RetentionPlan:
    now: datetime
    workloads: list[WorkloadRetention]
    prunes: dict[str, Any] = field(default_factory=dict)  # repository -> PrunePlan

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "workloads": [w.as_dict() for w in self.workloads],
            "prune": {repo: plan.as_dict() for repo, plan in self.prunes.items()},
        }


def _backup_lock(estate: Estate, repository: str, stanza: str, now: datetime) -> Any:
    """A function giving a backup set's Object Lock expiry, for immutable S3 repositories."""
    from drd.retention.immutability import (  # noqa: PLC0415 - S3 only
        PGBACKREST_DIR,
        open_repository_root,
        repository_policy,
    )

    repo = estate.config.repository(repository)
    if not isinstance(repo, S3Repository) or repository_policy(estate, repository) is None:
        return None
    root = open_repository_root(repo)

    def locked_until(backup: BackupSet) -> datetime | None:
        key = f"{PGBACKREST_DIR}/backup/{stanza}/{backup.label}/backup.manifest"
        info = root.head(key)
        if info is None or info.retain_until is None or info.retain_until <= now:
            return None
        return info.retain_until

    return locked_until


def _compare(kind: str, in_repository: set[str], in_catalog: set[str]) -> list[str]:
    problems = []
    if missing := sorted(in_repository - in_catalog):
        problems.append(f"{kind} in the repository, not in the catalog: {', '.join(missing)}")
    if extra := sorted(in_catalog - in_repository):
        problems.append(f"{kind} in the catalog, not in the repository: {', '.join(extra)}")
    return problems


def _plan_workload(
    estate: Estate, catalog: Catalog, name: str, now: datetime
) -> tuple[WorkloadRetention, Any]:
    workload = estate.config.workload(name)
    tier = estate.tiers[workload.tier]
    result = WorkloadRetention(name, tier.name, workload.repository)
    pgbr = Pgbackrest(write_config(estate, name))
    info = pgbr.info()
    locked = _backup_lock(estate, workload.repository, pgbr.cfg.stanza, now)
    result.db = plan_db(info, tier.retention, locked_until=locked, now=now)
    result.disagreements += _compare(
        "backups",
        {b.label for b in info.backups},
        {b.label for b in catalog.list_backups(name) if b.repository == workload.repository},
    )
    repo = None
    if workload.filestore is not None:
        from drd.snapshot.service import open_repo  # noqa: PLC0415 - snapshot stack on demand

        repo = open_repo(estate, workload.repository)
        refs = repo.snapshots(name)
        points = [RestorePoint(r.id, datetime.fromisoformat(r.manifest.time)) for r in refs]
        result.snapshots = select(points, tier.retention)
        result.disagreements += _compare(
            "snapshots",
            {r.id for r in refs},
            {s.id for s in catalog.list_snapshots(name) if s.repository == workload.repository},
        )
    return result, repo


def plan(
    estate: Estate, catalog: Catalog, workload: str | None = None, *, now: datetime | None = None
) -> RetentionPlan:
    """What retention would do now; reads only."""
    plan_, _ = _plan(estate, catalog, workload, now or datetime.now(UTC))
    return plan_


def _plan(
    estate: Estate, catalog: Catalog, workload: str | None, now: datetime
) -> tuple[RetentionPlan, dict[str, Any]]:
    from drd.snapshot.prune import plan_prune  # noqa: PLC0415 - snapshot stack on demand

    names = [workload] if workload else [w.name for w in estate.config.workloads]
    result = RetentionPlan(now, [])
    repos: dict[str, Any] = {}
    forgets: dict[str, list[str]] = {}
    for name in names:
        item, repo = _plan_workload(estate, catalog, name, now)
        result.workloads.append(item)
        if repo is not None:
            repos[item.repository] = repo
            forgets.setdefault(item.repository, []).extend(item.forget)
    for repository, repo in repos.items():
        result.prunes[repository] = plan_prune(repo, forgets[repository], now=now)
    return result, repos


def apply(
    estate: Estate,
    catalog: Catalog,
    workload: str | None = None,
    *,
    dry_run: bool = False,
    actor: str = "drd",
) -> dict[str, Any]:
    """Apply retention now; the plan it applied and what it deleted and locked."""
    from drd.snapshot.prune import apply_prune  # noqa: PLC0415 - snapshot stack on demand

    now = datetime.now(UTC)
    current, repos = _plan(estate, catalog, workload, now)
    problems = [f"{w.workload}: {d}" for w in current.workloads for d in w.disagreements]
    if problems:
        raise SafetyError(
            "retention refused: the catalog and the repository disagree about what exists: "
            + "; ".join(problems),
            hint="run `drd catalog rebuild` to reconcile the catalog from the repository",
        )
    report: dict[str, Any] = {"plan": current.as_dict(), "dry_run": dry_run, "deleted": []}
    if dry_run:
        return report

    def audited(subject: str, repository: str) -> Any:
        def on_delete(kind: str, key: str) -> None:
            catalog.append_audit(
                actor,
                f"retention.delete.{kind}",
                f"{subject}/{key}",
                {"repository": repository, "kind": kind, "key": key},
            )
            report["deleted"].append({"subject": subject, "kind": kind, "key": key})

        return on_delete

    for item in current.workloads:
        if item.db is None or not item.db.expire:
            continue
        tier = estate.tiers[item.tier]
        pgbr = Pgbackrest(write_config(estate, item.workload))
        gone = apply_db(
            pgbr,
            item.db,
            tier.retention,
            locked_until=_backup_lock(estate, item.repository, pgbr.cfg.stanza, now),
            now=now,
            on_delete=audited(item.workload, item.repository),
        )
        for label in gone:
            catalog.forget_backup(item.repository, pgbr.cfg.stanza, label)
    for repository, repo in repos.items():
        prune = current.prunes[repository]
        done = apply_prune(
            repo, prune, on_delete=audited(repository, repository), lock_wait=PRUNE_LOCK_WAIT
        )
        for snapshot_id in done.forgotten:
            catalog.forget_snapshot(repository, snapshot_id)
    report["locks_extended"] = _extend_locks(estate, current, now)
    log.info("retention_applied", deleted=len(report["deleted"]), workload=workload or "all")
    return report


def _extend_locks(estate: Estate, current: RetentionPlan, now: datetime) -> int:
    """Keep everything still kept on immutable S3 repositories locked for the tier's days."""
    from drd.retention.immutability import (  # noqa: PLC0415 - S3 only
        FILESTORE_DIR,
        REPOSITORY_EXEMPT,
        lock_pgbackrest,
        lock_prefix,
        open_repository_root,
        repository_policy,
    )

    changed = 0
    for repository in {w.repository for w in current.workloads}:
        repo = estate.config.repository(repository)
        policy = repository_policy(estate, repository)
        if not isinstance(repo, S3Repository) or policy is None:
            continue
        root = open_repository_root(repo)
        for item in current.workloads:
            if item.repository == repository:
                stanza = estate.config.workload(item.workload).stanza()
                changed += len(lock_pgbackrest(root, stanza, policy, now))
        changed += len(
            lock_prefix(root, f"{FILESTORE_DIR}/", policy, now, exempt=REPOSITORY_EXEMPT)
        )
    return changed

"""The estate at a glance: per workload, objectives vs. what is measured right now.

Used by ``drd status`` (and later the daemon's status page). It runs the quick checks
(everything but the forced WAL switch) and reports what they measured: primary state,
newest backup of each type and its age, newest archived WAL and its age, and the RPO
exposure (see ``drd.rpo``) against the tier's objective. An unreachable primary or
repository is a result, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from drd.check import Inspection, failed_critical, inspect
from drd.config import Estate
from drd.rpo import verdict as rpo_verdict


@dataclass(frozen=True)
class WorkloadStatus:
    workload: str
    tier: str
    rpo: timedelta
    rto: timedelta
    repository: str
    primary: str
    primary_state: str  # primary / standby / down
    primary_error: str | None
    last_full_age: timedelta | None
    last_diff_age: timedelta | None
    last_incr_age: timedelta | None
    last_backup: str | None
    last_archived_wal: str | None
    archive_age: timedelta | None
    archive_failures: int | None
    rpo_exposure: timedelta | None
    rpo_verdict: str
    checks: str  # "9/10 ok" plus failing critical names
    verdict: str  # ok / warning / critical

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _ages(run: Inspection, now: datetime) -> dict[str, timedelta | None]:
    out: dict[str, timedelta | None] = {}
    for kind in ("full", "diff", "incr"):
        latest = run.info.latest(kind) if run.info else None
        out[kind] = now - latest.stopped_at if latest else None
    return out


def workload_status(estate: Estate, name: str, *, now: datetime | None = None) -> WorkloadStatus:
    now = now or datetime.now(UTC)
    workload = estate.config.workload(name)
    tier = estate.tiers[workload.tier]
    run = inspect(estate, name, quick=True, now=now)
    server = run.server
    archiver = server.archiver if server else None
    archive_age = None
    if archiver is not None and archiver.last_archived_time is not None:
        archive_age = max(timedelta(0), now - archiver.last_archived_time)
    exposure = run.exposure.exposure if run.exposure else None
    rpo_state = rpo_verdict(exposure, tier.objectives.rpo, tier.alerts.rpo_warning_ratio)
    failed = failed_critical(run.results)
    passed = sum(1 for r in run.results if r.ok)
    checks = f"{passed}/{len(run.results)} ok" + (
        f"; failing: {', '.join(r.name for r in failed)}" if failed else ""
    )
    if server is None or not server.reachable:
        state = "down"
    else:
        state = "standby" if server.in_recovery else "primary"
    if failed or rpo_state == "critical":
        overall = "critical"
    elif rpo_state in ("warning", "unknown") or any(not r.ok for r in run.results):
        overall = "warning"
    else:
        overall = "ok"
    ages = _ages(run, now)
    newest = run.info.backups[-1] if run.info and run.info.backups else None
    return WorkloadStatus(
        workload=name,
        tier=workload.tier,
        rpo=tier.objectives.rpo,
        rto=tier.objectives.rto,
        repository=workload.repository,
        primary=workload.postgres.primary.describe(),
        primary_state=state,
        primary_error=server.error if server else None,
        last_full_age=ages["full"],
        last_diff_age=ages["diff"],
        last_incr_age=ages["incr"],
        last_backup=f"{newest.label} ({newest.type})" if newest else None,
        last_archived_wal=archiver.last_archived_wal if archiver else None,
        archive_age=archive_age,
        archive_failures=archiver.failed_count if archiver else None,
        rpo_exposure=exposure,
        rpo_verdict=rpo_state,
        checks=checks,
        verdict=overall,
    )


def estate_status(estate: Estate) -> list[WorkloadStatus]:
    return [workload_status(estate, w.name) for w in estate.config.workloads]

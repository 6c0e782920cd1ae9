"""The estate at a glance: per workload, objectives vs. what is measured right now.

Used by ``drd status`` and (later) the daemon's status page. Everything here is read:
PostgreSQL is probed (bounded in time; an unreachable primary is a result, not an
error) and the catalog supplies the newest backup and drill.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from drd.config import Estate
from drd.postgres.probe import ServerState, probe


class _CatalogReader(Protocol):
    def latest_backup(self, workload: str) -> Any: ...
    def latest_drill(self, workload: str) -> Any: ...


@dataclass(frozen=True)
class WorkloadStatus:
    workload: str
    tier: str
    rpo: timedelta
    rto: timedelta
    repository: str
    primary: str
    primary_state: str  # "primary", "standby", "down"
    primary_error: str | None
    archive_age: timedelta | None  # now - last archived WAL (the live RPO exposure proxy)
    archive_failures: int | None
    last_backup: str | None
    last_backup_at: datetime | None
    last_drill_at: datetime | None
    last_drill_verdict: str | None
    verdict: str  # ok / warning / critical

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _verdict(
    server: ServerState, archive_age: timedelta | None, rpo: timedelta, warn_ratio: float
) -> str:
    if not server.reachable or server.in_recovery:
        return "critical"
    if archive_age is None:
        return "warning"  # nothing archived yet: the exposure is unknown
    if archive_age > rpo:
        return "critical"
    if archive_age > rpo * warn_ratio:
        return "warning"
    return "ok"


def workload_status(
    estate: Estate, name: str, catalog: _CatalogReader | None, *, now: datetime | None = None
) -> WorkloadStatus:
    now = now or datetime.now(UTC)
    workload = estate.config.workload(name)
    tier = estate.tiers[workload.tier]
    server = probe(workload.postgres.primary)
    archive_age = None
    failures = None
    if server.archiver is not None:
        failures = server.archiver.failed_count
        if server.archiver.last_archived_time is not None:
            archive_age = max(timedelta(0), now - server.archiver.last_archived_time)
    backup = catalog.latest_backup(name) if catalog is not None else None
    drill = catalog.latest_drill(name) if catalog is not None else None
    state = "down" if not server.reachable else ("standby" if server.in_recovery else "primary")
    return WorkloadStatus(
        workload=name,
        tier=workload.tier,
        rpo=tier.objectives.rpo,
        rto=tier.objectives.rto,
        repository=workload.repository,
        primary=workload.postgres.primary.describe(),
        primary_state=state,
        primary_error=server.error,
        archive_age=archive_age,
        archive_failures=failures,
        last_backup=f"{backup.label} ({backup.type})" if backup is not None else None,
        last_backup_at=getattr(backup, "stopped_at", None),
        last_drill_at=getattr(drill, "finished_at", None),
        last_drill_verdict=getattr(drill, "verdict", None),
        verdict=_verdict(server, archive_age, tier.objectives.rpo, tier.alerts.rpo_warning_ratio),
    )


def estate_status(estate: Estate, catalog: _CatalogReader | None) -> list[WorkloadStatus]:
    return [workload_status(estate, w.name, catalog) for w in estate.config.workloads]

"""What the daemon runs, derived from the tiers, and when each job is due.

One ``JobSpec`` per (kind, workload): database backups per type (the tier's crons),
heartbeat and monitoring (intervals), filestore snapshots (cron), retention (the
daemon's ``retention_cron``), drills (cron), plus the estate-wide drill-namespace
sweeper when Kubernetes drills are configured.

Catch-up: a scheduled job is *due* when its schedule fired since it last ran. "Last
ran" comes from the catalog (newest backup of that type, snapshot, drill, retention
run), so a daemon that was down for three slots runs the job once on start, not three
times, and a restarted daemon does not repeat what its predecessor just did.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from drd.catalog import Catalog
from drd.config import Estate
from drd.config.cron import trigger

JobKind = Literal[
    "backup-full",
    "backup-diff",
    "backup-incr",
    "heartbeat",
    "monitor",
    "snapshot",
    "retention",
    "drill",
    "sweep",
]
#: Jobs that catch up after downtime (the rest simply run at their next interval).
CATCH_UP: frozenset[str] = frozenset(
    {"backup-full", "backup-diff", "backup-incr", "snapshot", "retention", "drill"}
)
#: Jobs that run as a ``drd`` subprocess (isolated, killable on timeout); the others are
#: short and run in the daemon's own threads.
SUBPROCESS: frozenset[str] = CATCH_UP
#: Monitoring refreshes checks, RPO exposure and the status page at this pace at most.
MONITOR_INTERVAL = timedelta(seconds=60)
SWEEP_INTERVAL = timedelta(minutes=15)


@dataclass(frozen=True)
class JobSpec:
    kind: JobKind
    workload: str | None  # None: estate-wide (sweeper)
    repository: str | None
    cron: str | None = None  # crontab expression, or
    interval: timedelta | None = None  # a fixed interval
    timeout: timedelta = timedelta(hours=6)

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.workload or '*'}"

    def next_fire(self, after: datetime) -> datetime | None:
        """The first scheduled time strictly after ``after``."""
        if self.interval is not None:
            return after + self.interval
        if self.cron is None:
            return None
        cron = trigger(self.cron)
        fire: datetime | None = cron.get_next_fire_time(None, after + timedelta(microseconds=1))
        return fire


def jobs_for(estate: Estate, *, retention_cron: str, job_timeout: timedelta) -> list[JobSpec]:
    """Every job the estate's tiers ask for."""
    jobs: list[JobSpec] = []
    for workload in estate.config.workloads:
        tier = estate.tiers[workload.tier]
        name, repo = workload.name, workload.repository
        for kind, cron in (
            ("backup-full", tier.postgres.full),
            ("backup-diff", tier.postgres.diff),
            ("backup-incr", tier.postgres.incr),
        ):
            if cron is not None:
                jobs.append(JobSpec(kind, name, repo, cron=cron, timeout=job_timeout))  # type: ignore[arg-type]
        jobs.append(JobSpec("heartbeat", name, None, interval=tier.postgres.heartbeat_interval))
        jobs.append(
            JobSpec("monitor", name, None, interval=min(MONITOR_INTERVAL, tier.objectives.rpo / 4))
        )
        if workload.filestore is not None and tier.filestore is not None:
            jobs.append(
                JobSpec("snapshot", name, repo, cron=tier.filestore.snapshot, timeout=job_timeout)
            )
        jobs.append(JobSpec("retention", name, repo, cron=retention_cron, timeout=job_timeout))
        jobs.append(
            JobSpec(
                "drill",
                name,
                repo,
                cron=tier.drills.cron,
                timeout=tier.drills.timeout + timedelta(minutes=10),
            )
        )
    if estate.config.kubernetes is not None:
        jobs.append(JobSpec("sweep", None, None, interval=SWEEP_INTERVAL))
    return jobs


_WINDOWS = (timedelta(hours=1), timedelta(days=1), timedelta(days=8), timedelta(days=32),
            timedelta(days=400))  # fmt: skip


def previous_fire(cron: str, now: datetime) -> datetime | None:
    """The newest time ``cron`` fired at or before ``now`` (within about a year).

    Looked for in growing windows, so an hourly cron costs a few steps, not a year's.
    """
    schedule = trigger(cron)
    for window in _WINDOWS:
        fire = schedule.get_next_fire_time(None, now - window)
        if fire is None or fire > now:
            continue
        while True:
            following = schedule.get_next_fire_time(fire, fire + timedelta(microseconds=1))
            if following is None or following > now:
                return fire  # type: ignore[no-any-return]
            fire = following
    return None


@dataclass(frozen=True)
class LastRuns:
    """When each catch-up job last ran, read from the catalog in a few queries."""

    times: dict[str, datetime]
    _fired: dict[tuple[str, datetime], datetime | None] = field(default_factory=dict)

    @classmethod
    def from_catalog(cls, catalog: Catalog, jobs: Iterable[JobSpec]) -> LastRuns:
        """Newest backup per type, snapshot, drill and retention run of each workload.

        Backups count when they exist (a failed backup is retried with backoff, and after
        a restart once more); drills, snapshots and retention when attempted, so a failed
        drill is not repeated at every start.
        """
        wanted = {job.id for job in jobs if job.kind in CATCH_UP}
        times: dict[str, datetime] = {}
        for (kind, workload), when in catalog.last_activity().items():
            job_id = f"{kind.removeprefix('run:')}:{workload}"
            if job_id in wanted and (job_id not in times or when > times[job_id]):
                times[job_id] = when
        return cls(times)

    def due(self, job: JobSpec, now: datetime) -> bool:
        """True when ``job``'s schedule fired since it last ran (or it never ran).

        The newest fire before ``now`` is computed once per cron expression, so a pass
        over thousands of workloads sharing a few tiers costs a few trigger walks.
        """
        last = self.times.get(job.id)
        if last is None:
            return True
        if job.cron is None:
            fire = job.next_fire(last)
            return fire is not None and fire <= now
        key = (job.cron, now)
        if key not in self._fired:
            self._fired[key] = previous_fire(job.cron, now)
        fired = self._fired[key]
        return fired is not None and fired > last


_BACKUP_RANK = {"backup-full": 0, "backup-diff": 1, "backup-incr": 2}


def due_jobs(jobs: Iterable[JobSpec], last: LastRuns, now: datetime | None = None) -> list[JobSpec]:
    """Catch-up jobs whose schedule fired since they last ran, in a stable order.

    At most one backup per workload: a due full makes a due diff or incr pointless (and
    they would only queue behind pgBackRest's stanza lock), a due diff an incr.
    """
    now = now or datetime.now(UTC)
    due = [job for job in jobs if job.kind in CATCH_UP and last.due(job, now)]
    best: dict[str | None, int] = {}
    for job in due:
        if job.kind in _BACKUP_RANK:
            best[job.workload] = min(best.get(job.workload, 9), _BACKUP_RANK[job.kind])
    return [
        job
        for job in due
        if job.kind not in _BACKUP_RANK or _BACKUP_RANK[job.kind] == best[job.workload]
    ]

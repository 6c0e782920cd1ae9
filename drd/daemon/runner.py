"""How the daemon executes a job.

Backups, snapshots, retention and drills run as ``drd`` subprocesses, exactly the
commands an operator would type: a crash or leak in one cannot take the daemon down,
the job timeout kills the whole process group (``drd.command``), and the child dies
with the daemon (``setpriv --pdeathsig KILL``), so a leader that is killed never leaves
a job running that its successor would start again. They record themselves in the
catalog; afterwards the daemon republishes the metrics from the catalog, because the
child's metrics die with it.

Heartbeats, monitoring (checks + RPO exposure, also cached for the status page) and the
namespace sweeper are short and run in the daemon's threads.
"""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from drd import command, metrics
from drd.catalog import Catalog
from drd.check import allowed_backup_age
from drd.config import Estate
from drd.daemon.jobs import SUBPROCESS, JobSpec
from drd.errors import SafetyError
from drd.log import get_logger

log = get_logger("drd.daemon")

#: drd's exit codes a job may end with and still have done its work: a failed drill
#: (10) was run and recorded; it is not retried.
_DONE_CODES = {"drill": (0, SafetyError.exit_code)}


class JobRunner(Protocol):
    """Runs one job to completion or raises; ``cancel`` asks it to stop early."""

    def __call__(self, job: JobSpec, cancel: threading.Event) -> None: ...


def job_argv(job: JobSpec) -> list[str]:
    """The ``drd`` command line of a subprocess job."""
    workload = str(job.workload)
    if job.kind.startswith("backup-"):
        return ["backup", "db", workload, "--type", job.kind.removeprefix("backup-")]
    return {
        "snapshot": ["snapshot", "create", workload],
        "retention": ["retention", "apply", workload],
        "drill": ["drill", "run", workload],
    }[job.kind]


@dataclass
class DrdRunner:
    """The real runner. ``estate`` is read at each call (SIGHUP may have replaced it)."""

    estate: Callable[[], Estate]
    config_path: Path
    log_level: str = "info"
    on_status: Callable[[str, Any], None] | None = None  # monitor results, for the page
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, job: JobSpec, cancel: threading.Event) -> None:
        if job.kind in SUBPROCESS:
            self._subprocess(job, cancel)
        elif job.kind == "heartbeat":
            from drd.postgres.heartbeat import write_heartbeat  # noqa: PLC0415

            workload = self.estate().config.workload(str(job.workload))
            write_heartbeat(workload.postgres.primary)
        elif job.kind == "monitor":
            from drd.status import workload_status  # noqa: PLC0415

            status = workload_status(self.estate(), str(job.workload))
            if self.on_status is not None:
                self.on_status(str(job.workload), status)
        elif job.kind == "sweep":
            from drd.drill.kubernetes import KubernetesCluster, sweep  # noqa: PLC0415

            settings = self.estate().config.kubernetes
            sweep(
                KubernetesCluster.from_environment(context=settings.context if settings else None)
            )

    def _subprocess(self, job: JobSpec, cancel: threading.Event) -> None:
        argv = [sys.executable, "-m", "drd", "--config", str(self.config_path)]
        argv += ["--log-level", self.log_level, *job_argv(job)]
        if setpriv := shutil.which("setpriv"):
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        try:
            command.run(
                argv,
                timeout=job.timeout.total_seconds(),
                cancel=cancel,
                env=self.env or None,
                ok_codes=_DONE_CODES.get(job.kind, (0,)),
            )
        except Exception:
            if job.kind.startswith("backup-") and job.workload:
                metrics.record_backup_failure(job.workload, job.kind.removeprefix("backup-"))
            elif job.kind == "snapshot" and job.workload:
                metrics.record_snapshot_failure(job.workload)
            raise


def publish_thresholds(estate: Estate, now: datetime | None = None) -> None:
    """The tiers' thresholds per workload, for alert rules; they change only with the
    config, so this runs at start and on reload, not on every pass."""
    now = now or datetime.now(UTC)
    allowed = {
        name: allowed_backup_age(tier, "full", now) or tier.drills.max_age
        for name, tier in estate.tiers.items()
    }
    for item in estate.config.workloads:
        tier = estate.tiers[item.tier]
        metrics.set_tier_thresholds(
            item.name,
            backup_max_age=allowed[item.tier],
            drill_max_age=tier.drills.max_age,
            rpo=tier.objectives.rpo,
            rto=tier.objectives.rto,
        )


def publish_from_catalog(estate: Estate, catalog: Catalog, now: datetime | None = None) -> None:
    """Set the gauges that the catalog knows (last successes, drills, tier thresholds).

    The daemon's /metrics must say what happened even when a subprocess did it, and
    after a restart; the catalog is where that is written down.
    """
    now = now or datetime.now(UTC)
    for (kind, workload), when in catalog.last_activity().items():
        if kind.startswith("backup-"):
            backup_type = kind.removeprefix("backup-")
            metrics.BACKUP_LAST_SUCCESS.labels(workload, backup_type).set(when.timestamp())
        elif kind == "snapshot":
            metrics.SNAPSHOT_LAST_SUCCESS.labels(workload).set(when.timestamp())
    newest_drill = catalog.latest_drills()
    newest_pass = catalog.latest_drills(status="succeeded")
    for item in estate.config.workloads:
        latest = newest_drill.get(item.name)
        if latest is not None and latest.finished_at is not None:
            metrics.record_drill(
                item.name,
                passed=latest.verdict == "pass",
                rpo=latest.measured_rpo_seconds,
                rto=latest.measured_rto_seconds,
                finished_at=latest.finished_at,
            )
        passed = newest_pass.get(item.name)
        if passed is not None and passed.finished_at is not None:
            metrics.DRILL_LAST_SUCCESS.labels(item.name).set(passed.finished_at.timestamp())

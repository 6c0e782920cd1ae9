"""The drill agent: restore a workload's newest restore point at T0, verify, measure.

Restore point (design.md): the database target and the filestore snapshot must be
consistent, with the filestore at least as new as the database. So:

* with a filestore: the newest snapshot taken at or before T0 sets the database target
  (its ``db_restore_point`` server time, taken at snapshot start);
* without one: T0 itself, or the end of the archived WAL when T0 is "now".

The database (pgBackRest restore + WAL replay) and the filestore (snapshot restore) are
restored in parallel. RPO = T0 - newest heartbeat found in the restored database.
RTO = drill start -> verified ready, with phase timings. A drill passes when every
check passes and both measurements are within the tier's objectives.
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from drd import __version__
from drd.config import Estate
from drd.drill.sandbox import LocalSandbox
from drd.errors import DrdError
from drd.log import get_logger
from drd.pgbackrest.continuity import archived_segment
from drd.pgbackrest.info import StanzaInfo
from drd.pgbackrest.runner import Pgbackrest
from drd.pgbackrest.stanza import write_config
from drd.snapshot.repository import Repository

log = get_logger("drd.drill")


@dataclass
class DrillResult:
    drill_id: str
    workload: str
    tier: str
    t0: datetime
    started_at: datetime
    finished_at: datetime | None = None
    db_target: str = "latest"
    backup_label: str | None = None
    snapshot_id: str | None = None
    recovered_heartbeat: datetime | None = None
    rpo_seconds: float | None = None
    rto_seconds: float | None = None
    rpo_objective_seconds: float = 0.0
    rto_objective_seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    sandbox: str | None = None
    sandbox_port: int | None = None

    @property
    def verdict(self) -> str:
        return "pass" if not self.reasons else "fail"

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["verdict"] = self.verdict
        for key in ("t0", "started_at", "finished_at", "recovered_heartbeat"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data


class _Phases:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.lock = threading.Lock()

    def timed(self, name: str) -> _Timer:
        return _Timer(self, name)


class _Timer:
    def __init__(self, phases: _Phases, name: str) -> None:
        self.phases, self.name = phases, name

    def __enter__(self) -> None:
        self.started = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        with self.phases.lock:
            self.phases.times[self.name] = round(time.monotonic() - self.started, 3)


def _archive_end_time(pgbr: Pgbackrest, info: StanzaInfo) -> datetime | None:
    """When the newest archived WAL segment reached the repository (its file time)."""
    if info.archive_id is None or info.archive_max is None:
        return None
    directory = f"archive/{pgbr.cfg.stanza}/{info.archive_id}/{info.archive_max[:16]}"
    listing = pgbr.repo_ls(directory, timeout=120)
    times = [
        int(str(meta["time"]))
        for name, meta in listing.items()
        if meta.get("type") == "file"
        and archived_segment(name) == info.archive_max
        and "time" in meta
    ]
    return datetime.fromtimestamp(max(times), UTC) if times else None


def _restore_db(
    pgbr: Pgbackrest, sandbox: LocalSandbox, target: datetime | None, timeout: float
) -> None:
    args = [f"--pg1-path={sandbox.data_dir}", "--archive-mode=off"]
    if target is None:
        args.append("--type=default")
    else:
        # pgBackRest parses PostgreSQL's own timestamp format, not ISO 8601 with a "T".
        stamp = target.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        args += ["--type=time", f"--target={stamp}", "--target-action=promote"]
    pgbr.run("restore", *args, timeout=timeout)


@dataclass
class _Plan:
    """What to restore: decided before anything is provisioned."""

    pgbr: Pgbackrest
    target: datetime | None  # None: replay all archived WAL
    repo: Repository | None = None
    snapshot_id: str | None = None


def _plan(
    estate: Estate, workload_name: str, t0: datetime, at_now: bool, result: DrillResult
) -> _Plan:
    """The newest consistent restore point available at T0 (see the module docstring)."""
    workload = estate.config.workload(workload_name)
    pgbr = Pgbackrest(write_config(estate, workload_name))
    info = pgbr.info()
    usable = [b for b in info.backups if b.stopped_at <= t0 and not b.error]
    if not usable:
        raise DrdError(f"no backup of {workload_name} finished before T0 {t0.isoformat()}")
    result.backup_label = usable[-1].label
    result.versions["pgbackrest"] = pgbr.run("version", timeout=60).stdout.strip()
    plan = _Plan(pgbr, None if at_now else t0)
    if workload.filestore is not None:
        from drd.snapshot.service import open_repo  # noqa: PLC0415 - snapshot stack on demand

        plan.repo = open_repo(estate, workload.repository)
        taken = [
            s
            for s in plan.repo.snapshots(workload_name)
            if datetime.fromisoformat(s.manifest.time) <= t0
        ]
        if not taken:
            raise DrdError(f"no filestore snapshot of {workload_name} taken before T0")
        snapshot = taken[-1]
        plan.snapshot_id = result.snapshot_id = snapshot.id
        point = snapshot.manifest.db_restore_point or {}
        plan.target = datetime.fromisoformat(point.get("server_time") or snapshot.manifest.time)
    archive_end = _archive_end_time(pgbr, info)
    if plan.target is not None and (archive_end is None or plan.target >= archive_end):
        # Everything archived was written before the target: replay it all.
        # (PostgreSQL refuses to start when a time target lies beyond the WAL.)
        plan.target = None
    result.db_target = plan.target.isoformat() if plan.target else "latest"
    return plan


def _restore(plan: _Plan, sandbox: LocalSandbox, timeout: float, phases: _Phases) -> None:
    """Database and filestore in parallel; the server is started isolated."""

    def restore_files() -> None:
        if plan.repo is None or plan.snapshot_id is None:
            return
        from drd.snapshot.restore import restore_snapshot  # noqa: PLC0415

        with phases.timed("filestore_restore"):
            restore_snapshot(plan.repo, plan.snapshot_id, sandbox.filestore, force=True)

    with ThreadPoolExecutor(1, "drd-drill-files") as pool:
        files: Future[None] = pool.submit(restore_files)
        with phases.timed("db_restore"):
            _restore_db(plan.pgbr, sandbox, plan.target, timeout)
        sandbox.isolate()
        with phases.timed("wal_replay"):
            sandbox.start(timeout)
            sandbox.wait_promoted(timeout)
        files.result()


def _verify(estate: Estate, workload_name: str, sandbox: LocalSandbox, result: DrillResult) -> None:
    from drd.drill import checks, odoo  # noqa: PLC0415 - drill-only modules

    workload = estate.config.workload(workload_name)
    tier = estate.tiers[workload.tier]
    dbname = workload.odoo.database if workload.odoo else workload.postgres.primary.dbname
    with sandbox.connect(dbname) as conn:
        is_odoo = workload.odoo is not None and odoo.is_odoo_database(conn)
        if workload.odoo is not None and not is_odoo:
            result.checks.append(
                {"name": "odoo_database", "ok": False, "detail": f"{dbname} has no Odoo tables"}
            )
        if is_odoo:
            report = odoo.neutralize(conn)  # before anything else runs against it
            result.checks.append(
                {"name": "neutralized", "ok": report.flagged, "detail": str(report.disabled)}
            )
        result.checks.append(checks.check_server_ready(conn).__dict__)
        result.recovered_heartbeat = checks.newest_heartbeat(conn)
        if is_odoo and workload.filestore is not None:
            attachments = odoo.verify_attachments(conn, sandbox.filestore)
            result.checks.append(
                {"name": "attachments", "ok": attachments.ok, "detail": attachments.describe()}
            )
        if tier.drills.amcheck:
            result.checks.append(checks.run_amcheck(conn).__dict__)
        result.versions["postgresql"] = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    for extra in workload.checks:
        with sandbox.connect(extra.database or dbname) as conn:
            outcome = checks.run_custom_check(conn, extra.name, extra.sql, extra.expected)
            result.checks.append(outcome.__dict__)


def _judge(result: DrillResult) -> None:
    """Reasons for a failed verdict: missed objectives and failed checks."""
    if result.recovered_heartbeat is None:
        result.reasons.append("no heartbeat in the restored database: RPO cannot be measured")
    else:
        result.rpo_seconds = round((result.t0 - result.recovered_heartbeat).total_seconds(), 3)
        if result.rpo_seconds > result.rpo_objective_seconds:
            result.reasons.append(
                f"RPO {result.rpo_seconds:.0f}s exceeds the objective "
                f"{result.rpo_objective_seconds:.0f}s"
            )
    if result.rto_seconds is not None and result.rto_seconds > result.rto_objective_seconds:
        result.reasons.append(
            f"RTO {result.rto_seconds:.0f}s exceeds the objective "
            f"{result.rto_objective_seconds:.0f}s"
        )
    for check in result.checks:
        if not check.get("ok"):
            result.reasons.append(f"check {check.get('name')} failed: {check.get('detail')}")


def run_local_drill(
    estate: Estate,
    workload_name: str,
    *,
    t0: datetime | None = None,
    keep: bool = False,
) -> DrillResult:
    """Run one drill in a local sandbox; never raises for a failed drill (see ``reasons``).

    The sandbox is torn down on every path (pass, fail, error, Ctrl-C) unless ``keep``.
    """
    workload = estate.config.workload(workload_name)
    tier = estate.tiers[workload.tier]
    started = datetime.now(UTC)
    result = DrillResult(
        drill_id=secrets.token_hex(4),
        workload=workload_name,
        tier=tier.name,
        t0=t0 or started,
        started_at=started,
        rpo_objective_seconds=tier.objectives.rpo.total_seconds(),
        rto_objective_seconds=tier.objectives.rto.total_seconds(),
        versions={"drd": __version__},
    )
    timeout = tier.drills.timeout.total_seconds()
    clock = time.monotonic()
    phases = _Phases()
    sandbox: LocalSandbox | None = None
    try:
        with phases.timed("provision"):
            plan = _plan(estate, workload_name, result.t0, t0 is None, result)
            sandbox = LocalSandbox.provision(
                estate.config.state_dir / "drills",
                result.drill_id,
                os_user=workload.postgres.os_user,
                bin_dir=workload.postgres.bin_dir,
            )
            result.sandbox, result.sandbox_port = str(sandbox.root), sandbox.port
        _restore(plan, sandbox, timeout, phases)
        with phases.timed("verification"):
            _verify(estate, workload_name, sandbox, result)
        result.rto_seconds = round(time.monotonic() - clock, 3)
        _judge(result)
    except (DrdError, OSError) as exc:
        result.reasons.append(f"error: {exc}")
        if sandbox is not None and (tail := sandbox.log_tail(5)):
            result.reasons.append(f"server log: {tail}")
    finally:
        result.phases = dict(phases.times)
        result.finished_at = datetime.now(UTC)
        if sandbox is not None:
            sandbox.teardown(keep=keep)
    log.info(
        "drill_finished",
        workload=workload_name,
        verdict=result.verdict,
        rpo=result.rpo_seconds,
        rto=result.rto_seconds,
    )
    return result

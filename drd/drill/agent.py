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
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from drd import __version__
from drd.config import Estate
from drd.drill.sandbox import LocalSandbox
from drd.errors import DrdError, LockError
from drd.log import get_logger
from drd.pgbackrest.info import StanzaInfo
from drd.pgbackrest.runner import Pgbackrest
from drd.pgbackrest.stanza import write_config

if TYPE_CHECKING:  # the snapshot stack (cryptography) loads only for a filestore
    from drd.snapshot.repository import Repository, SnapshotRef

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
    #: Stopping and removing the sandbox, after the verdict: not part of the RTO.
    teardown_seconds: float | None = None

    @property
    def verdict(self) -> str:
        return "pass" if not self.reasons else "fail"

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["verdict"] = self.verdict
        for key in _TIME_FIELDS:
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DrillResult:
        """The inverse of ``as_dict`` (a result printed by an agent in a pod).

        The verdict is recomputed from ``reasons``, never taken from the input: a
        result that says "pass" while listing reasons is a failed drill.
        """
        known = set(cls.__dataclass_fields__)
        values = {key: value for key, value in data.items() if key in known}
        try:
            for key in _TIME_FIELDS:
                if values.get(key) is not None:
                    values[key] = datetime.fromisoformat(values[key])
            result = cls(**values)
        except (TypeError, ValueError) as exc:
            raise DrdError(f"the drill agent's result is malformed: {exc}") from exc
        if data.get("verdict") not in (None, result.verdict):
            result.reasons.append(
                f"the agent reported verdict {data.get('verdict')!r} but listed no reasons"
            )
        return result


_TIME_FIELDS = ("t0", "started_at", "finished_at", "recovered_heartbeat")


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
    from drd.pgbackrest.continuity import archived_segment  # noqa: PLC0415 - time targets only

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
    pgbr: Pgbackrest, sandbox: LocalSandbox, label: str, target: datetime | None, timeout: float
) -> None:
    # --set: the backup the plan chose; pgBackRest's own choice for a time target compares
    # against its whole-second stop time and can refuse a target in the same second.
    args = [f"--pg1-path={sandbox.data_dir}", "--archive-mode=off", f"--set={label}"]
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
    label: str  # the backup set to restore
    target: datetime | None  # None: replay all archived WAL
    repo: Repository | None = None
    snapshot_id: str | None = None


def _newest_snapshot(
    estate: Estate, workload_name: str, t0: datetime
) -> tuple[Repository, SnapshotRef]:
    """The workload's snapshot repository and its newest snapshot taken at or before T0."""
    from drd.snapshot.service import open_repo  # noqa: PLC0415 - snapshot stack on demand

    repo = open_repo(estate, estate.config.workload(workload_name).repository)
    taken = [
        s for s in repo.snapshots(workload_name) if datetime.fromisoformat(s.manifest.time) <= t0
    ]
    if not taken:
        raise DrdError(f"no filestore snapshot of {workload_name} taken before T0")
    return repo, taken[-1]


def _plan(
    estate: Estate, workload_name: str, t0: datetime, at_now: bool, result: DrillResult
) -> _Plan:
    """The newest consistent restore point available at T0 (see the module docstring)."""
    workload = estate.config.workload(workload_name)
    pgbr = Pgbackrest(write_config(estate, workload_name))
    plan = _Plan(pgbr, "", None if at_now else t0)
    # Read at the same time: pgBackRest's version (only recorded), the stanza's backups,
    # the newest archived WAL (for a time target) and the filestore snapshot repository.
    with ThreadPoolExecutor(3, "drd-drill-plan") as pool:
        version = pool.submit(pgbr.run, "version", timeout=60)
        newest = None
        if workload.filestore is not None:
            newest = pool.submit(_newest_snapshot, estate, workload_name, t0)
        info = pgbr.info()  # its error first, as when the reads were one after another
        archive_end = None
        if plan.target is not None or newest is not None:
            archive_end = pool.submit(_archive_end_time, pgbr, info)
        result.versions["pgbackrest"] = version.result().stdout.strip()
        if newest is not None:
            plan.repo, snapshot = newest.result()
            plan.snapshot_id = result.snapshot_id = snapshot.id
            point = snapshot.manifest.db_restore_point or {}
            plan.target = datetime.fromisoformat(point.get("server_time") or snapshot.manifest.time)
        if plan.target is not None and archive_end is not None:
            end = archive_end.result()
            if end is None or plan.target >= end:
                # Everything archived was written before the target: replay it all.
                # (PostgreSQL refuses to start when a time target lies beyond the WAL.)
                plan.target = None
    result.db_target = plan.target.isoformat() if plan.target else "latest"
    # The newest backup that ended by the target. pgBackRest stamps the stop time after
    # waiting out the current second, so a backup can carry a stop time up to 1 s later
    # than its real end. A snapshot's database time is read after any backup it could
    # pair with had finished, so for a snapshot-derived target that second is allowed;
    # for T0 given by the operator it is not (the target could precede consistency).
    limit = plan.target or t0
    if plan.snapshot_id is not None and plan.target is not None:
        limit = limit.replace(microsecond=0) + _STOP_RESOLUTION
    usable = [b for b in info.backups if b.stopped_at <= limit and not b.error]
    if not usable:
        raise DrdError(f"no backup of {workload_name} finished before {limit.isoformat()}")
    plan.label = result.backup_label = usable[-1].label
    return plan


_STOP_RESOLUTION = timedelta(seconds=1)
LOCK_RETRY = 5.0  # seconds between attempts while a prune holds the snapshot repository


def _restore(plan: _Plan, sandbox: LocalSandbox, timeout: float, phases: _Phases) -> None:
    """Database and filestore in parallel; the server is started isolated."""

    def restore_files() -> None:
        if plan.repo is None or plan.snapshot_id is None:
            return
        from drd.snapshot.restore import restore_snapshot  # noqa: PLC0415

        deadline = time.monotonic() + timeout
        with phases.timed("filestore_restore"):
            while True:
                try:
                    restore_snapshot(plan.repo, plan.snapshot_id, sandbox.filestore, force=True)
                    return
                except LockError:
                    # A prune holds the repository exclusively: wait for it rather than
                    # fail the drill (the wait counts into the RTO, as it would for real).
                    if time.monotonic() >= deadline:
                        raise
                    log.info("drill_waiting_for_prune", snapshot=plan.snapshot_id[:8])
                    time.sleep(LOCK_RETRY)

    with ThreadPoolExecutor(1, "drd-drill-files") as pool:
        files: Future[None] = pool.submit(restore_files)
        with phases.timed("db_restore"):
            _restore_db(plan.pgbr, sandbox, plan.label, plan.target, timeout)
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
    drill_id: str | None = None,
    requested_at: datetime | None = None,
) -> DrillResult:
    """Run one drill in a local sandbox; never raises for a failed drill (see ``reasons``).

    The sandbox is torn down on every path (pass, fail, error, Ctrl-C) unless ``keep``.
    ``requested_at`` is when the drill was asked for, if earlier than now (a Kubernetes
    Job that had to be scheduled and pull its image): the wait counts into the RTO as
    the ``scheduling`` phase, and a drill "at now" takes it as T0.
    """
    workload = estate.config.workload(workload_name)
    tier = estate.tiers[workload.tier]
    started = datetime.now(UTC)
    requested = min(requested_at or started, started)
    result = DrillResult(
        drill_id=drill_id or secrets.token_hex(4),
        workload=workload_name,
        tier=tier.name,
        t0=t0 or requested,
        started_at=requested,
        rpo_objective_seconds=tier.objectives.rpo.total_seconds(),
        rto_objective_seconds=tier.objectives.rto.total_seconds(),
        versions={"drd": __version__},
    )
    timeout = tier.drills.timeout.total_seconds()
    waited = (started - requested).total_seconds()
    clock = time.monotonic() - waited
    phases = _Phases()
    if requested_at is not None:
        phases.times["scheduling"] = round(waited, 3)
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
            torn = time.monotonic()
            sandbox.teardown(keep=keep)
            result.teardown_seconds = round(time.monotonic() - torn, 3)
    log.info(
        "drill_finished",
        workload=workload_name,
        verdict=result.verdict,
        rpo=result.rpo_seconds,
        rto=result.rto_seconds,
    )
    return result

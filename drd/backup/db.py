"""``drd backup db``: run a pgBackRest backup for a workload and index it in the catalog.

pgBackRest does the backup; drd decides the type (a diff/incr without a prior full
becomes a full, and says so), records the run, reads ``info`` afterwards and makes the
catalog match the repository: every backup set in ``info`` is upserted, sets that are
gone from the repository are forgotten.

Immutability. Before anything is written, a repository serving an immutable tier must be
able to lock (``ensure_object_lock``: a ``ConfigError`` otherwise). pgBackRest 2.45 sends
no Object Lock headers, so on an S3 repository drd locks its files after the backup
(``lock_pgbackrest``): the backup's directory, ``backup.info`` and the archived WAL.
Only objects modified since the previous *locked* backup started (minus
``LOCK_MARGIN``) are looked at, see ``lock_since``. A failure to lock fails the run
loudly, after the backup is recorded in the catalog: it exists, but is not immutable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from drd import metrics
from drd.catalog import BackupRecord, Catalog
from drd.config import Estate
from drd.config.models import S3Repository
from drd.errors import BackupError, DrdError
from drd.log import bind_context, get_logger
from drd.pgbackrest.info import BackupSet, StanzaInfo
from drd.pgbackrest.runner import Pgbackrest
from drd.pgbackrest.stanza import StanzaConfig, write_config
from drd.retention.immutability import (
    LockPolicy,
    ensure_object_lock,
    lock_pgbackrest,
    open_repository_root,
    repository_policy,
)
from drd.storage.base import format_lock_date

log = get_logger("drd.backup")

BACKUP_TYPES = ("full", "diff", "incr")
#: Locking looks at objects modified since the previous locked backup started, minus
#: this: pgBackRest's start time is this host's clock, S3's last-modified the server's.
LOCK_MARGIN = timedelta(hours=1)


@dataclass(frozen=True)
class BackupOutcome:
    workload: str
    requested_type: str
    type: str
    promoted_to_full: bool
    record: BackupRecord
    duration_seconds: float
    run_id: int


def to_record(
    workload: str, cfg: StanzaConfig, backup: BackupSet, run_id: int | None = None
) -> BackupRecord:
    return BackupRecord(
        workload=workload,
        stanza=cfg.stanza,
        repository=cfg.repository,
        label=backup.label,
        type=backup.type,  # type: ignore[arg-type]
        started_at=backup.started_at,
        stopped_at=backup.stopped_at,
        lsn_start=backup.lsn_start,
        lsn_stop=backup.lsn_stop,
        wal_start=backup.wal_start,
        wal_stop=backup.wal_stop,
        size=backup.size,
        repo_size=backup.repo_size,
        run_id=run_id,
    )


def sync_catalog(catalog: Catalog, cfg: StanzaConfig, info: StanzaInfo) -> int:
    """Make the catalog's backups of this stanza match the repository; count of sets."""
    known = {
        b.label: b
        for b in catalog.list_backups(cfg.workload)
        if b.stanza == cfg.stanza and b.repository == cfg.repository
    }
    labels = {backup.label for backup in info.backups}
    for backup in info.backups:
        previous = known.get(backup.label)
        run_id = previous.run_id if previous is not None else None
        catalog.record_backup(to_record(cfg.workload, cfg, backup, run_id))
    for label in known.keys() - labels:
        catalog.forget_backup(cfg.repository, cfg.stanza, label)
    return len(labels)


def lock_policy(estate: Estate, repository_name: str) -> LockPolicy | None:
    """The Object Lock to put on pgBackRest's files: S3 repositories on immutable tiers."""
    if not isinstance(estate.config.repository(repository_name), S3Repository):
        return None
    return repository_policy(estate, repository_name)


def lock_since(catalog: Catalog, cfg: StanzaConfig) -> datetime | None:
    """From when to look for pgBackRest objects to lock; None: every object (a sweep).

    The start of the newest backup of this stanza whose run locked its files, minus
    ``LOCK_MARGIN``. That run locked everything written before it finished, so what is
    newer than its start covers, with some overlap, the WAL archived since and the new
    backup's files; objects already locked long enough cost one HEAD and are left
    alone. Backups whose locking failed (recorded, run failed) or predate immutability
    are skipped, so their files are looked at again. None (no such backup: the first
    run, a rebuilt catalog) sweeps the stanza once; retention's lock extension also
    sweeps without a bound.
    """
    backups = sorted(
        (
            b
            for b in catalog.list_backups(cfg.workload)
            if b.stanza == cfg.stanza and b.repository == cfg.repository
        ),
        key=lambda b: b.started_at,
        reverse=True,
    )
    for backup in backups:
        run = catalog.get_run(backup.run_id) if backup.run_id is not None else None
        if run is not None and run.status == "succeeded" and "locked_objects" in run.details:
            return backup.started_at - LOCK_MARGIN
    return None


def lock_backup_files(
    estate: Estate, cfg: StanzaConfig, policy: LockPolicy, since: datetime | None
) -> int:
    """Lock the stanza's files written since ``since``; how many locks were set."""
    root = open_repository_root(estate.config.repository(cfg.repository))
    try:
        now = datetime.now(UTC)
        changes = lock_pgbackrest(root, cfg.stanza, policy, now, modified_since=since)
    finally:
        root.close()
    log.info(
        "pgbackrest_locked",
        stanza=cfg.stanza,
        repository=cfg.repository,
        count=len(changes),
        since=format_lock_date(since) if since is not None else None,
        until=format_lock_date(policy.retain_until(now)),
        mode=policy.mode,
    )
    return len(changes)


def backup_db(
    estate: Estate,
    workload_name: str,
    backup_type: str,
    catalog: Catalog,
    *,
    pgbackrest: Pgbackrest | None = None,
) -> BackupOutcome:
    """Run one backup; raise ``BackupError`` (after recording the failed run) on failure.

    On an immutable S3 repository the backup's files are then locked; if that fails the
    backup stays recorded, the run is failed and ``BackupError`` says so.
    """
    if backup_type not in BACKUP_TYPES:
        raise BackupError(f"unknown backup type {backup_type!r}", hint="use full, diff or incr")
    # A bucket that cannot lock for an immutable tier: refuse before writing anything.
    ensure_object_lock(estate, estate.config.workload(workload_name).repository)
    cfg = write_config(estate, workload_name)
    pgbr = pgbackrest or Pgbackrest(cfg)
    before = pgbr.info()
    if not before.exists:
        raise BackupError(
            f"workload {workload_name}: stanza {cfg.stanza} does not exist "
            f"in repository {cfg.repository}",
            hint=f"run `drd db setup {workload_name} --apply` first",
        )
    actual = backup_type
    if backup_type != "full" and before.latest("full") is None:
        actual = "full"
        log.warning("backup_promoted_to_full", requested=backup_type, reason="no prior full backup")
    policy = lock_policy(estate, cfg.repository)
    since = lock_since(catalog, cfg) if policy is not None else None
    run_id = catalog.start_run(
        "backup", workload_name, {"requested_type": backup_type, "type": actual}
    )
    bind_context(run_id=run_id, workload=workload_name)
    log.info("backup_started", type=actual, stanza=cfg.stanza, repository=cfg.repository)
    started = time.monotonic()
    try:
        pgbr.backup(actual)
        after = pgbr.info()
        known = {b.label for b in before.backups}
        new = [b for b in after.backups if b.label not in known]
        if not new:
            raise BackupError(
                f"pgbackrest backup for {workload_name} succeeded "
                "but no new backup set is in `info`"
            )
        newest = new[-1]
        sync_catalog(catalog, cfg, after)
        record = catalog.record_backup(to_record(workload_name, cfg, newest, run_id))
    except DrdError as exc:
        duration = time.monotonic() - started
        catalog.finish_run(
            run_id, "failed", error=str(exc), details={"duration_seconds": round(duration, 3)}
        )
        metrics.record_backup_failure(workload_name, actual)
        # Not log.exception: the error is re-raised and reported once, by the caller.
        log.error("backup_failed", type=actual, error=str(exc))  # noqa: TRY400
        raise
    duration = time.monotonic() - started
    details: dict[str, object] = {
        "label": newest.label,
        "type": newest.type,
        "duration_seconds": round(duration, 3),
    }
    if policy is not None:
        try:
            details["locked_objects"] = lock_backup_files(estate, cfg, policy, since)
        except DrdError as exc:
            error = BackupError(
                f"backup {newest.label} of {workload_name} is in repository {cfg.repository} "
                f"and recorded, but it is NOT immutable: locking its pgBackRest files "
                f"({policy.describe()}) failed: {exc.message}",
                hint="fix the bucket or the credentials (s3:PutObjectRetention, "
                "s3:GetObjectRetention), then run `drd repo check-immutability "
                f"{cfg.repository}`; the next backup locks what this one missed",
            )
            catalog.finish_run(run_id, "failed", error=str(error), details=details)
            metrics.record_backup_failure(workload_name, newest.type)
            log.error("backup_not_locked", label=newest.label, error=str(exc))  # noqa: TRY400
            raise error from exc
    catalog.finish_run(run_id, "succeeded", details=details)
    metrics.record_backup_success(workload_name, newest.type, duration, newest.stopped_at)
    log.info("backup_succeeded", label=newest.label, type=newest.type, duration=round(duration, 3))
    return BackupOutcome(
        workload=workload_name,
        requested_type=backup_type,
        type=newest.type,
        promoted_to_full=actual != backup_type,
        record=record,
        duration_seconds=duration,
        run_id=run_id,
    )

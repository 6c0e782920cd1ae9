"""``drd backup db``: run a pgBackRest backup for a workload and index it in the catalog.

pgBackRest does the backup; drd decides the type (a diff/incr without a prior full
becomes a full, and says so), records the run, reads ``info`` afterwards and makes the
catalog match the repository: every backup set in ``info`` is upserted, sets that are
gone from the repository are forgotten.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from drd import metrics
from drd.catalog import BackupRecord, Catalog
from drd.config import Estate
from drd.errors import BackupError, DrdError
from drd.log import bind_context, get_logger
from drd.pgbackrest.info import BackupSet, StanzaInfo
from drd.pgbackrest.runner import Pgbackrest
from drd.pgbackrest.stanza import StanzaConfig, write_config

log = get_logger("drd.backup")

BACKUP_TYPES = ("full", "diff", "incr")


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


def backup_db(
    estate: Estate,
    workload_name: str,
    backup_type: str,
    catalog: Catalog,
    *,
    pgbackrest: Pgbackrest | None = None,
) -> BackupOutcome:
    """Run one backup; raise ``BackupError`` (after recording the failed run) on failure."""
    if backup_type not in BACKUP_TYPES:
        raise BackupError(f"unknown backup type {backup_type!r}", hint="use full, diff or incr")
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
    catalog.finish_run(
        run_id,
        "succeeded",
        details={
            "label": newest.label,
            "type": newest.type,
            "duration_seconds": round(duration, 3),
        },
    )
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

"""Snapshot services for the CLI and the daemon: open a configured repository, snapshot
a workload's filestore with its database restore point, record it in the catalog.

A repository serving an immutable tier on S3 is opened through a ``LockingStore``: every
object written through it (packs, indexes, manifests; ``locks/`` excepted) gets the
tier's Object Lock. ``snapshot_workload`` refuses to start when the bucket cannot
lock (``ensure_object_lock``), before anything is written.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from drd import metrics
from drd.catalog import Catalog, SnapshotRecord
from drd.config import Estate
from drd.errors import ConfigError, DrdError
from drd.log import bind_context, get_logger
from drd.postgres.probe import connect
from drd.retention.immutability import ensure_object_lock, lock_store
from drd.snapshot.create import CreateResult, Progress, create_snapshot
from drd.snapshot.keys import PassphraseWrapper, open_repository
from drd.snapshot.repository import Repository
from drd.storage.factory import open_store

log = get_logger("drd.snapshot")


def open_repo(estate: Estate, repository_name: str) -> Repository:
    """Open the snapshot repository of a configured repository with its passphrase;
    writes through it are locked when the repository is immutable (``lock_store``)."""
    try:
        repo_cfg = estate.config.repository(repository_name)
    except StopIteration:
        known = ", ".join(r.name for r in estate.config.repositories) or "none"
        raise ConfigError(f"unknown repository {repository_name!r} (known: {known})") from None
    store = lock_store(estate, repository_name, open_store(repo_cfg))
    passphrase = repo_cfg.encryption.passphrase.get().get_secret_value()
    config, keys, _ = open_repository(store, [PassphraseWrapper(passphrase)])
    return Repository(store, config, keys)


def db_restore_point(estate: Estate, workload_name: str, catalog: Catalog | None) -> dict[str, Any]:
    """The database point this snapshot pairs with: taken at snapshot *start*, so the
    filestore is at least as new as the database (extra files are harmless)."""
    workload = estate.config.workload(workload_name)
    point: dict[str, Any] = {"taken_at": datetime.now(UTC).isoformat()}
    try:
        with connect(workload.postgres.primary) as conn:
            row = conn.execute(
                "SELECT now(), pg_is_in_recovery(),"
                " CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
                " ELSE pg_current_wal_lsn() END::text,"
                " (SELECT timeline_id FROM pg_control_checkpoint())"
            ).fetchone()
        if row is not None:
            point.update(
                server_time=row[0].isoformat(),
                in_recovery=bool(row[1]),
                wal_lsn=row[2],
                timeline=row[3],
            )
    except (psycopg.Error, DrdError) as exc:
        point["error"] = f"primary unreachable: {str(exc).strip()[:200]}"
    latest = catalog.latest_backup(workload_name) if catalog is not None else None
    if latest is not None:
        point["backup_label"] = latest.label
        point["backup_stopped_at"] = latest.stopped_at.isoformat()
    return point


def snapshot_workload(
    estate: Estate,
    workload_name: str,
    *,
    catalog: Catalog | None = None,
    tags: tuple[str, ...] = (),
    progress: Progress | None = None,
) -> CreateResult:
    workload = estate.config.workload(workload_name)
    if workload.filestore is None:
        raise ConfigError(f"workload {workload_name} has no filestore configured")
    ensure_object_lock(estate, workload.repository)  # before anything is written
    repo = open_repo(estate, workload.repository)
    point = db_restore_point(estate, workload_name, catalog)
    run_id = catalog.start_run("snapshot", workload_name, {"tags": list(tags)}) if catalog else None
    if run_id is not None:
        bind_context(run_id=run_id, workload=workload_name)
    started = time.monotonic()
    try:
        result = create_snapshot(
            repo,
            workload.filestore.path,
            workload=workload_name,
            tier=workload.tier,
            tags=tags,
            db_restore_point=point,
            progress=progress,
        )
    except DrdError as exc:
        metrics.record_snapshot_failure(workload_name)
        if catalog is not None and run_id is not None:
            catalog.finish_run(run_id, "failed", error=str(exc))
        raise
    stats = result.stats
    metrics.record_snapshot_success(
        workload_name,
        duration=time.monotonic() - started,
        finished_at=datetime.now(UTC),
        files=stats.files,
        bytes_new=stats.bytes_new,
        bytes_dedup=stats.bytes_deduplicated,
    )
    if catalog is not None and run_id is not None:
        catalog.record_snapshot(
            SnapshotRecord(
                id=result.snapshot_id,
                workload=workload_name,
                repository=workload.repository,
                created_at=datetime.fromisoformat(result.manifest.time),
                parent=result.manifest.parent,
                files=stats.files,
                bytes=stats.bytes,
                added_bytes=stats.bytes_new,
                db_restore_point=point,
                tags=tags,
                run_id=run_id,
            )
        )
        catalog.finish_run(
            run_id, "succeeded", details={"snapshot": result.snapshot_id, **stats.as_dict()}
        )
    return result

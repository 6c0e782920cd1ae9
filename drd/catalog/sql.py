"""The catalog in SQL, shared by both backends.

Statements use ``?`` placeholders and only SQL that SQLite (>= 3.35) and PostgreSQL
(>= 13) both understand (``ON CONFLICT ... DO UPDATE``, ``RETURNING``). What differs
is behind ``Dialect`` (type names, value conversions) and the backend's ``_session``
(transactions, locking, error wrapping).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from drd.catalog import audit
from drd.catalog.base import Catalog, Dialect, LockKind, Session
from drd.catalog.migrations import apply_migrations
from drd.catalog.records import (
    GENESIS_HASH,
    AuditEntry,
    BackupRecord,
    BackupType,
    DrillRecord,
    DrillStatus,
    FinalStatus,
    IncidentRecord,
    IncidentStatus,
    Run,
    SnapshotRecord,
    to_utc,
)
from drd.errors import CatalogError
from drd.log import get_logger

log = get_logger("drd.catalog")

Row = tuple[Any, ...]

_RUN = "id, kind, workload, status, started_at, finished_at, error, details"
_BACKUP = (
    "id, workload, stanza, repository, label, type, started_at, stopped_at, "
    "lsn_start, lsn_stop, wal_start, wal_stop, size, repo_size, run_id"
)
_SNAPSHOT = (
    "id, workload, repository, created_at, files, bytes, added_bytes, parent, "
    "db_restore_point, tags, run_id"
)
_DRILL = (
    "id, workload, t0, started_at, status, finished_at, measured_rpo_seconds, "
    "measured_rto_seconds, phases, verdict, details, run_id"
)
_INCIDENT = "id, workload, kind, status, started_at, operator, reason, plan, finished_at, outcome"
_AUDIT = "seq, ts, actor, action, subject, details, prev_hash, hash"
_AUDIT_PAGE = 1000


def _where(**filters: Any) -> tuple[str, list[Any]]:
    """``WHERE a = ? AND b = ?`` for the filters that are not None (names are ours)."""
    used = {name: value for name, value in filters.items() if value is not None}
    if not used:
        return "", []
    return " WHERE " + " AND ".join(f"{name} = ?" for name in used), list(used.values())


def _limit(limit: int | None) -> str:
    if limit is None:
        return ""
    if limit < 1:
        raise ValueError(f"limit must be positive (got {limit})")
    return f" LIMIT {int(limit)}"


class SqlCatalog(Catalog):
    """``Catalog`` over a ``Dialect`` and the backend's ``_session``."""

    def __init__(
        self, dialect: Dialect, location: str, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._dialect = dialect
        self.location = location
        self._clock = clock or (lambda: datetime.now(UTC))

    @abstractmethod
    def _session(
        self, what: str, *, write: bool = False, lock: LockKind | None = None
    ) -> AbstractContextManager[Session]:
        """One transaction; driver errors become ``CatalogError`` naming ``what``."""

    def _now(self) -> datetime:
        return to_utc(self._clock(), "clock")

    def _migrate(self) -> None:
        with self._session("schema migration", write=True, lock="migrate") as s:
            before, after = apply_migrations(
                s, self._dialect, location=self.location, now=self._now()
            )
        if before != after:
            log.info(
                "catalog_migrated",
                backend=self.backend,
                location=self.location,
                from_version=before,
                to_version=after,
            )

    # -- conversions --------------------------------------------------------------------

    def _ts(self, value: datetime | None) -> Any:
        return None if value is None else self._dialect.ts_param(value)

    def _ts_out(self, value: Any) -> datetime | None:
        return None if value is None else self._dialect.ts_value(value)

    def _json(self, value: Mapping[str, Any] | None) -> Any:
        return self._dialect.json_param(audit.sanitize_details(value))

    def _run(self, row: Row) -> Run:
        d = self._dialect
        return Run(
            id=int(row[0]),
            kind=row[1],
            workload=row[2],
            status=row[3],
            started_at=d.ts_value(row[4]),
            finished_at=self._ts_out(row[5]),
            error=row[6],
            details=d.json_value(row[7]),
        )

    def _backup(self, row: Row) -> BackupRecord:
        d = self._dialect
        return BackupRecord(
            id=int(row[0]),
            workload=row[1],
            stanza=row[2],
            repository=row[3],
            label=row[4],
            type=row[5],
            started_at=d.ts_value(row[6]),
            stopped_at=d.ts_value(row[7]),
            lsn_start=row[8],
            lsn_stop=row[9],
            wal_start=row[10],
            wal_stop=row[11],
            size=row[12],
            repo_size=row[13],
            run_id=row[14],
        )

    def _snapshot(self, row: Row) -> SnapshotRecord:
        d = self._dialect
        restore_point = None if row[8] is None else d.json_value(row[8])
        return SnapshotRecord(
            id=row[0],
            workload=row[1],
            repository=row[2],
            created_at=d.ts_value(row[3]),
            files=int(row[4]),
            bytes=int(row[5]),
            added_bytes=int(row[6]),
            parent=row[7],
            db_restore_point=restore_point,
            tags=tuple(d.json_value(row[9])),
            run_id=row[10],
        )

    def _drill(self, row: Row) -> DrillRecord:
        d = self._dialect
        return DrillRecord(
            id=int(row[0]),
            workload=row[1],
            t0=d.ts_value(row[2]),
            started_at=d.ts_value(row[3]),
            status=row[4],
            finished_at=self._ts_out(row[5]),
            measured_rpo_seconds=row[6],
            measured_rto_seconds=row[7],
            phases=d.json_value(row[8]),
            verdict=row[9],
            details=d.json_value(row[10]),
            run_id=row[11],
        )

    def _incident(self, row: Row) -> IncidentRecord:
        d = self._dialect
        return IncidentRecord(
            id=int(row[0]),
            workload=row[1],
            kind=row[2],
            status=row[3],
            started_at=d.ts_value(row[4]),
            operator=row[5],
            reason=row[6],
            plan=d.json_value(row[7]),
            finished_at=self._ts_out(row[8]),
            outcome=row[9],
        )

    def _audit(self, row: Row) -> AuditEntry:
        return AuditEntry(
            seq=int(row[0]),
            ts=self._dialect.ts_value(row[1]),
            actor=row[2],
            action=row[3],
            subject=row[4],
            details=audit.parse_details(row[5], int(row[0])),
            prev_hash=row[6],
            hash=row[7],
        )

    def _select(self, what: str, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._session(what) as s:
            return s.execute(sql, params)

    # -- runs ------------------------------------------------------------------------

    def start_run(
        self, kind: str, workload: str | None, details: Mapping[str, Any] | None = None
    ) -> int:
        with self._session("start_run", write=True) as s:
            rows = s.execute(
                "INSERT INTO runs (kind, workload, status, started_at, details) "
                "VALUES (?, ?, 'running', ?, ?) RETURNING id",
                (kind, workload, self._ts(self._now()), self._json(details)),
            )
        return int(rows[0][0])

    def finish_run(
        self,
        run_id: int,
        status: FinalStatus,
        error: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Run:
        if status not in ("succeeded", "failed"):
            raise ValueError(f"a run finishes as 'succeeded' or 'failed' (got {status!r})")
        with self._session("finish_run", write=True) as s:
            rows = s.execute(
                f"SELECT {_RUN} FROM runs WHERE id = ?{self._dialect.for_update}", (run_id,)
            )
            if not rows:
                raise CatalogError(f"run {run_id} is not in catalog {self.location}")
            run = self._run(rows[0])
            if run.status != "running":
                if run.status == status:
                    return run
                raise CatalogError(
                    f"run {run_id} already finished as {run.status}; cannot mark it {status}"
                )
            merged = {**run.details, **audit.sanitize_details(details)}
            rows = s.execute(
                "UPDATE runs SET status = ?, finished_at = ?, error = ?, details = ? "
                f"WHERE id = ? RETURNING {_RUN}",
                (
                    status,
                    self._ts(self._now()),
                    None if error is None else audit.sanitize_text(error),
                    self._json(merged),
                    run_id,
                ),
            )
        return self._run(rows[0])

    def get_run(self, run_id: int) -> Run | None:
        rows = self._select("get_run", f"SELECT {_RUN} FROM runs WHERE id = ?", (run_id,))
        return self._run(rows[0]) if rows else None

    def list_runs(
        self,
        workload: str | None = None,
        kind: str | None = None,
        *,
        status: str | None = None,
        limit: int = 100,
    ) -> list[Run]:
        where, params = _where(workload=workload, kind=kind, status=status)
        sql = f"SELECT {_RUN} FROM runs{where} ORDER BY started_at DESC, id DESC{_limit(limit)}"
        return [self._run(row) for row in self._select("list_runs", sql, params)]

    # -- database backups -------------------------------------------------------------

    def record_backup(self, backup: BackupRecord) -> BackupRecord:
        b = backup
        with self._session("record_backup", write=True) as s:
            rows = s.execute(
                "INSERT INTO db_backups (workload, stanza, repository, label, type, started_at, "
                "stopped_at, lsn_start, lsn_stop, wal_start, wal_stop, size, repo_size, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (repository, stanza, label) DO UPDATE SET "
                "workload = excluded.workload, type = excluded.type, "
                "started_at = excluded.started_at, stopped_at = excluded.stopped_at, "
                "lsn_start = excluded.lsn_start, lsn_stop = excluded.lsn_stop, "
                "wal_start = excluded.wal_start, wal_stop = excluded.wal_stop, "
                "size = excluded.size, repo_size = excluded.repo_size, "
                "run_id = COALESCE(excluded.run_id, db_backups.run_id) "
                f"RETURNING {_BACKUP}",
                (
                    b.workload,
                    b.stanza,
                    b.repository,
                    b.label,
                    b.type,
                    self._ts(b.started_at),
                    self._ts(b.stopped_at),
                    b.lsn_start,
                    b.lsn_stop,
                    b.wal_start,
                    b.wal_stop,
                    b.size,
                    b.repo_size,
                    b.run_id,
                ),
            )
        return self._backup(rows[0])

    def list_backups(
        self, workload: str | None = None, *, limit: int | None = None
    ) -> list[BackupRecord]:
        where, params = _where(workload=workload)
        sql = (
            f"SELECT {_BACKUP} FROM db_backups{where} "
            f"ORDER BY stopped_at DESC, id DESC{_limit(limit)}"
        )
        return [self._backup(row) for row in self._select("list_backups", sql, params)]

    def latest_backup(
        self, workload: str, *, type: BackupType | None = None
    ) -> BackupRecord | None:
        where, params = _where(workload=workload, type=type)
        sql = f"SELECT {_BACKUP} FROM db_backups{where} ORDER BY stopped_at DESC, id DESC LIMIT 1"
        rows = self._select("latest_backup", sql, params)
        return self._backup(rows[0]) if rows else None

    def forget_backup(self, repository: str, stanza: str, label: str) -> bool:
        with self._session("forget_backup", write=True) as s:
            rows = s.execute(
                "DELETE FROM db_backups WHERE repository = ? AND stanza = ? AND label = ? "
                "RETURNING id",
                (repository, stanza, label),
            )
        return bool(rows)

    # -- filestore snapshots -------------------------------------------------------------

    def record_snapshot(self, snapshot: SnapshotRecord) -> SnapshotRecord:
        n = snapshot
        restore_point = None if n.db_restore_point is None else self._json(n.db_restore_point)
        with self._session("record_snapshot", write=True) as s:
            rows = s.execute(
                "INSERT INTO snapshots (id, workload, repository, created_at, files, bytes, "
                "added_bytes, parent, db_restore_point, tags, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (repository, id) DO UPDATE SET "
                "workload = excluded.workload, created_at = excluded.created_at, "
                "files = excluded.files, bytes = excluded.bytes, "
                "added_bytes = excluded.added_bytes, parent = excluded.parent, "
                "db_restore_point = excluded.db_restore_point, tags = excluded.tags, "
                "run_id = COALESCE(excluded.run_id, snapshots.run_id) "
                f"RETURNING {_SNAPSHOT}",
                (
                    n.id,
                    n.workload,
                    n.repository,
                    self._ts(n.created_at),
                    n.files,
                    n.bytes,
                    n.added_bytes,
                    n.parent,
                    restore_point,
                    self._dialect.json_param([str(tag) for tag in n.tags]),
                    n.run_id,
                ),
            )
        return self._snapshot(rows[0])

    def list_snapshots(
        self, workload: str | None = None, *, limit: int | None = None
    ) -> list[SnapshotRecord]:
        where, params = _where(workload=workload)
        sql = (
            f"SELECT {_SNAPSHOT} FROM snapshots{where} "
            f"ORDER BY created_at DESC, id DESC{_limit(limit)}"
        )
        return [self._snapshot(row) for row in self._select("list_snapshots", sql, params)]

    def latest_snapshot(self, workload: str) -> SnapshotRecord | None:
        found = self.list_snapshots(workload, limit=1)
        return found[0] if found else None

    def forget_snapshot(self, repository: str, snapshot_id: str) -> bool:
        with self._session("forget_snapshot", write=True) as s:
            rows = s.execute(
                "DELETE FROM snapshots WHERE repository = ? AND id = ? RETURNING id",
                (repository, snapshot_id),
            )
        return bool(rows)

    # -- drills --------------------------------------------------------------------------

    def record_drill(self, drill: DrillRecord) -> DrillRecord:
        r = drill
        with self._session("record_drill", write=True) as s:
            rows = s.execute(
                "INSERT INTO drills (workload, t0, started_at, status, finished_at, "
                "measured_rpo_seconds, measured_rto_seconds, phases, verdict, details, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (workload, started_at) DO UPDATE SET "
                "t0 = excluded.t0, status = excluded.status, finished_at = excluded.finished_at, "
                "measured_rpo_seconds = excluded.measured_rpo_seconds, "
                "measured_rto_seconds = excluded.measured_rto_seconds, "
                "phases = excluded.phases, verdict = excluded.verdict, "
                "details = excluded.details, run_id = COALESCE(excluded.run_id, drills.run_id) "
                f"RETURNING {_DRILL}",
                (
                    r.workload,
                    self._ts(r.t0),
                    self._ts(r.started_at),
                    r.status,
                    self._ts(r.finished_at),
                    r.measured_rpo_seconds,
                    r.measured_rto_seconds,
                    self._json(r.phases),
                    r.verdict,
                    self._json(r.details),
                    r.run_id,
                ),
            )
        return self._drill(rows[0])

    def list_drills(
        self, workload: str | None = None, *, limit: int | None = None
    ) -> list[DrillRecord]:
        where, params = _where(workload=workload)
        sql = f"SELECT {_DRILL} FROM drills{where} ORDER BY started_at DESC, id DESC{_limit(limit)}"
        return [self._drill(row) for row in self._select("list_drills", sql, params)]

    def latest_drill(
        self, workload: str, *, status: DrillStatus | None = None
    ) -> DrillRecord | None:
        where, params = _where(workload=workload, status=status)
        sql = f"SELECT {_DRILL} FROM drills{where} ORDER BY started_at DESC, id DESC LIMIT 1"
        rows = self._select("latest_drill", sql, params)
        return self._drill(rows[0]) if rows else None

    # -- incidents -------------------------------------------------------------------------

    def record_incident(self, incident: IncidentRecord) -> IncidentRecord:
        i = incident
        if i.id is not None:
            raise ValueError("record_incident inserts a new incident: id must be None")
        with self._session("record_incident", write=True) as s:
            rows = s.execute(
                "INSERT INTO incidents (workload, kind, status, started_at, operator, reason, "
                f"plan, finished_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                f"RETURNING {_INCIDENT}",
                (
                    i.workload,
                    i.kind,
                    i.status,
                    self._ts(i.started_at),
                    audit.sanitize_text(i.operator),
                    audit.sanitize_text(i.reason),
                    self._json(i.plan),
                    self._ts(i.finished_at),
                    None if i.outcome is None else audit.sanitize_text(i.outcome),
                ),
            )
        return self._incident(rows[0])

    def update_incident(
        self,
        incident_id: int,
        *,
        status: IncidentStatus | None = None,
        finished_at: datetime | None = None,
        outcome: str | None = None,
        plan: Mapping[str, Any] | None = None,
    ) -> IncidentRecord:
        with self._session("update_incident", write=True) as s:
            rows = s.execute(
                f"SELECT {_INCIDENT} FROM incidents WHERE id = ?{self._dialect.for_update}",
                (incident_id,),
            )
            if not rows:
                raise CatalogError(f"incident {incident_id} is not in catalog {self.location}")
            old = self._incident(rows[0])
            new = IncidentRecord(  # validates status and finished_at before writing
                workload=old.workload,
                kind=old.kind,
                status=status or old.status,
                started_at=old.started_at,
                operator=old.operator,
                reason=old.reason,
                plan=old.plan if plan is None else dict(plan),
                finished_at=finished_at or old.finished_at,
                outcome=old.outcome if outcome is None else audit.sanitize_text(outcome),
            )
            rows = s.execute(
                "UPDATE incidents SET status = ?, plan = ?, finished_at = ?, outcome = ? "
                f"WHERE id = ? RETURNING {_INCIDENT}",
                (
                    new.status,
                    self._json(new.plan),
                    self._ts(new.finished_at),
                    new.outcome,
                    incident_id,
                ),
            )
        return self._incident(rows[0])

    def get_incident(self, incident_id: int) -> IncidentRecord | None:
        sql = f"SELECT {_INCIDENT} FROM incidents WHERE id = ?"
        rows = self._select("get_incident", sql, (incident_id,))
        return self._incident(rows[0]) if rows else None

    def list_incidents(
        self, workload: str | None = None, *, limit: int | None = None
    ) -> list[IncidentRecord]:
        where, params = _where(workload=workload)
        sql = (
            f"SELECT {_INCIDENT} FROM incidents{where} "
            f"ORDER BY started_at DESC, id DESC{_limit(limit)}"
        )
        return [self._incident(row) for row in self._select("list_incidents", sql, params)]

    # -- audit log -------------------------------------------------------------------------

    def append_audit(
        self, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None
    ) -> AuditEntry:
        clean = audit.sanitize_details(details)
        with self._session("append_audit", write=True, lock="audit") as s:
            rows = s.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            seq, prev_hash = (int(rows[0][0]) + 1, str(rows[0][1])) if rows else (1, GENESIS_HASH)
            entry = audit.make_entry(
                seq=seq,
                ts=self._now(),
                actor=audit.sanitize_text(actor),
                action=audit.sanitize_text(action),
                subject=audit.sanitize_text(subject),
                details=clean,
                prev_hash=prev_hash,
            )
            s.execute(
                f"INSERT INTO audit_log ({_AUDIT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.seq,
                    self._ts(entry.ts),
                    entry.actor,
                    entry.action,
                    entry.subject,
                    audit.canonical_json(entry.details),
                    entry.prev_hash,
                    entry.hash,
                ),
            )
        return entry

    def audit_entries(self, since_seq: int = 0, *, limit: int | None = None) -> list[AuditEntry]:
        sql = f"SELECT {_AUDIT} FROM audit_log WHERE seq > ? ORDER BY seq{_limit(limit)}"
        return [self._audit(row) for row in self._select("audit_entries", sql, (since_seq,))]

    def _all_audit_entries(self) -> Iterator[AuditEntry]:
        after = 0
        while True:
            page = self.audit_entries(after, limit=_AUDIT_PAGE)
            yield from page
            if len(page) < _AUDIT_PAGE:
                return
            after = page[-1].seq

    def verify_audit_chain(self) -> int:
        return audit.verify_entries(self._all_audit_entries())

    # -- housekeeping ------------------------------------------------------------------------

    def schema_version(self) -> int:
        rows = self._select("schema_version", "SELECT MAX(version) FROM schema_migrations")
        return int(rows[0][0] or 0)

    def ping(self) -> None:
        self._select("ping", "SELECT 1")

"""The catalog in SQL, shared by both backends.

Statements use ``?`` placeholders and only SQL that SQLite (>= 3.35) and PostgreSQL
(>= 13) both understand (``ON CONFLICT ... DO UPDATE``, ``RETURNING``). What differs
is behind ``Dialect`` (type names, value conversions) and the backend's ``_session``
(transactions, locking, error wrapping). Record <-> row mapping is in ``tables``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
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
    RunStatus,
    SnapshotRecord,
    to_utc,
)
from drd.catalog.tables import BACKUPS, DRILLS, INCIDENTS, RUNS, SNAPSHOTS, Table
from drd.errors import CatalogError
from drd.log import get_logger

log = get_logger("drd.catalog")

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

    # -- generic helpers ----------------------------------------------------------------

    def _select(self, what: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._session(what) as s:
            return s.execute(sql, params)

    def _find(
        self, table: Table, order: str, limit: int | None = None, **filters: Any
    ) -> list[Any]:
        where, params = _where(**filters)
        sql = f"SELECT {table.select_list} FROM {table.name}{where} ORDER BY {order}{_limit(limit)}"
        rows = self._select(f"read {table.name}", sql, params)
        return [table.from_row(self._dialect, row) for row in rows]

    def _store(self, what: str, table: Table, record: Any) -> Any:
        """Insert (or upsert, for tables with a key) one record; the stored record."""
        with self._session(what, write=True) as s:
            rows = s.execute(table.insert_sql(), table.params(self._dialect, record))
        return table.from_row(self._dialect, rows[0])

    def _delete(self, what: str, table: Table, **key: Any) -> bool:
        where, params = _where(**key)
        with self._session(what, write=True) as s:
            return bool(s.execute(f"DELETE FROM {table.name}{where} RETURNING 1", params))

    # -- runs ------------------------------------------------------------------------

    def start_run(
        self, kind: str, workload: str | None, details: Mapping[str, Any] | None = None
    ) -> int:
        run = Run(0, kind, workload, "running", self._now(), details=dict(details or {}))
        return int(self._store("start_run", RUNS, run).id)

    def finish_run(
        self,
        run_id: int,
        status: FinalStatus,
        error: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Run:
        if status not in ("succeeded", "failed"):
            raise ValueError(f"a run finishes as 'succeeded' or 'failed' (got {status!r})")
        d = self._dialect
        with self._session("finish_run", write=True) as s:
            rows = s.execute(
                f"SELECT {RUNS.select_list} FROM runs WHERE id = ?{d.for_update}", (run_id,)
            )
            if not rows:
                raise CatalogError(f"run {run_id} is not in catalog {self.location}")
            run: Run = RUNS.from_row(d, rows[0])
            if run.status != "running":
                if run.status == status:
                    return run
                raise CatalogError(
                    f"run {run_id} already finished as {run.status}; cannot mark it {status}"
                )
            merged = {**run.details, **(details or {})}
            rows = s.execute(
                "UPDATE runs SET status = ?, finished_at = ?, error = ?, details = ? "
                f"WHERE id = ? RETURNING {RUNS.select_list}",
                (
                    status,
                    d.ts_param(self._now()),
                    None if error is None else audit.sanitize_text(error),
                    d.json_param(audit.sanitize_json(merged)),
                    run_id,
                ),
            )
        result: Run = RUNS.from_row(d, rows[0])
        return result

    def get_run(self, run_id: int) -> Run | None:
        found: list[Run] = self._find(RUNS, "id", id=run_id)
        return found[0] if found else None

    def list_runs(
        self,
        workload: str | None = None,
        kind: str | None = None,
        *,
        status: RunStatus | None = None,
        limit: int = 100,
    ) -> list[Run]:
        order = "started_at DESC, id DESC"
        return self._find(RUNS, order, limit, workload=workload, kind=kind, status=status)

    # -- database backups, snapshots, drills: idempotent upserts --------------------------

    def record_backup(self, backup: BackupRecord) -> BackupRecord:
        stored: BackupRecord = self._store("record_backup", BACKUPS, backup)
        return stored

    def list_backups(
        self, workload: str | None = None, *, limit: int | None = None
    ) -> list[BackupRecord]:
        return self._find(BACKUPS, "stopped_at DESC, id DESC", limit, workload=workload)

    def latest_backup(
        self, workload: str, *, type: BackupType | None = None
    ) -> BackupRecord | None:
        found = self._find(BACKUPS, "stopped_at DESC, id DESC", 1, workload=workload, type=type)
        return found[0] if found else None

    def forget_backup(self, repository: str, stanza: str, label: str) -> bool:
        return self._delete(
            "forget_backup", BACKUPS, repository=repository, stanza=stanza, label=label
        )

    def record_snapshot(self, snapshot: SnapshotRecord) -> SnapshotRecord:
        stored: SnapshotRecord = self._store("record_snapshot", SNAPSHOTS, snapshot)
        return stored

    def list_snapshots(
        self, workload: str | None = None, *, limit: int | None = None
    ) -> list[SnapshotRecord]:
        return self._find(SNAPSHOTS, "created_at DESC, id DESC", limit, workload=workload)

    def latest_snapshot(self, workload: str) -> SnapshotRecord | None:
        found = self.list_snapshots(workload, limit=1)
        return found[0] if found else None

    def forget_snapshot(self, repository: str, snapshot_id: str) -> bool:
        return self._delete("forget_snapshot", SNAPSHOTS, repository=repository, id=snapshot_id)

    def record_drill(self, drill: DrillRecord) -> DrillRecord:
        stored: DrillRecord = self._store("record_drill", DRILLS, drill)
        return stored

    def list_drills(
        self, workload: str | None = None, *, limit: int | None = None
    ) -> list[DrillRecord]:
        return self._find(DRILLS, "started_at DESC, id DESC", limit, workload=workload)

    def latest_drill(
        self, workload: str, *, status: DrillStatus | None = None
    ) -> DrillRecord | None:
        found = self._find(DRILLS, "started_at DESC, id DESC", 1, workload=workload, status=status)
        return found[0] if found else None

    def latest_drills(self, *, status: DrillStatus | None = None) -> dict[str, DrillRecord]:
        where, params = _where(status=status)
        inner = f"SELECT MAX(id) FROM {DRILLS.name}{where} GROUP BY workload"
        sql = f"SELECT {DRILLS.select_list} FROM {DRILLS.name} WHERE id IN ({inner})"
        rows = self._select(f"read {DRILLS.name}", sql, params)
        found = [DRILLS.from_row(self._dialect, row) for row in rows]
        return {drill.workload: drill for drill in found}

    # -- the daemon's view -------------------------------------------------------------------

    def last_activity(self) -> dict[tuple[str, str], datetime]:
        grouped = (
            (f"SELECT 'backup-' || type, workload, MAX(stopped_at) FROM {BACKUPS.name}"
             " GROUP BY type, workload"),
            (f"SELECT 'snapshot', workload, MAX(created_at) FROM {SNAPSHOTS.name}"
             " GROUP BY workload"),
            f"SELECT 'drill', workload, MAX(started_at) FROM {DRILLS.name} GROUP BY workload",
            (f"SELECT 'run:' || kind, workload, MAX(started_at) FROM {RUNS.name} WHERE workload"
             " IS NOT NULL AND kind IN ('retention', 'snapshot', 'drill') GROUP BY kind, workload"),
        )  # fmt: skip
        out: dict[tuple[str, str], datetime] = {}
        for sql in grouped:
            for kind, workload, value in self._select("read last activity", sql):
                when = self._dialect.ts_value(value)
                if (kind, workload) not in out or when > out[(kind, workload)]:
                    out[(kind, workload)] = when
        return out

    # -- incidents -------------------------------------------------------------------------

    def record_incident(self, incident: IncidentRecord) -> IncidentRecord:
        if incident.id is not None:
            raise ValueError("record_incident inserts a new incident: id must be None")
        clean = replace(
            incident,
            operator=audit.sanitize_text(incident.operator),
            reason=audit.sanitize_text(incident.reason),
            outcome=None if incident.outcome is None else audit.sanitize_text(incident.outcome),
        )
        stored: IncidentRecord = self._store("record_incident", INCIDENTS, clean)
        return stored

    def update_incident(
        self,
        incident_id: int,
        *,
        status: IncidentStatus | None = None,
        finished_at: datetime | None = None,
        outcome: str | None = None,
        plan: Mapping[str, Any] | None = None,
    ) -> IncidentRecord:
        d = self._dialect
        with self._session("update_incident", write=True) as s:
            rows = s.execute(
                f"SELECT {INCIDENTS.select_list} FROM incidents WHERE id = ?{d.for_update}",
                (incident_id,),
            )
            if not rows:
                raise CatalogError(f"incident {incident_id} is not in catalog {self.location}")
            old: IncidentRecord = INCIDENTS.from_row(d, rows[0])
            new = replace(  # validates status and finished_at before anything is written
                old,
                status=status or old.status,
                plan=old.plan if plan is None else dict(plan),
                finished_at=finished_at or old.finished_at,
                outcome=old.outcome if outcome is None else audit.sanitize_text(outcome),
            )
            rows = s.execute(
                "UPDATE incidents SET status = ?, plan = ?, finished_at = ?, outcome = ? "
                f"WHERE id = ? RETURNING {INCIDENTS.select_list}",
                (
                    new.status,
                    d.json_param(audit.sanitize_json(new.plan)),
                    None if new.finished_at is None else d.ts_param(new.finished_at),
                    new.outcome,
                    incident_id,
                ),
            )
        result: IncidentRecord = INCIDENTS.from_row(d, rows[0])
        return result

    def get_incident(self, incident_id: int) -> IncidentRecord | None:
        found: list[IncidentRecord] = self._find(INCIDENTS, "id", id=incident_id)
        return found[0] if found else None

    def list_incidents(
        self, workload: str | None = None, *, limit: int | None = None
    ) -> list[IncidentRecord]:
        return self._find(INCIDENTS, "started_at DESC, id DESC", limit, workload=workload)

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
                    self._dialect.ts_param(entry.ts),
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
        return [
            AuditEntry(
                seq=int(row[0]),
                ts=self._dialect.ts_value(row[1]),
                actor=row[2],
                action=row[3],
                subject=row[4],
                details=audit.parse_details(row[5], int(row[0])),
                prev_hash=row[6],
                hash=row[7],
            )
            for row in self._select("audit_entries", sql, (since_seq,))
        ]

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

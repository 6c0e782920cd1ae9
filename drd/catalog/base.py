"""The catalog interface, and the two small seams a SQL backend fills in.

``Catalog`` is what the rest of drd uses. ``Dialect`` (type names and value
conversions) and ``Session`` (one transaction on one connection) are what a backend
provides to the shared SQL implementation in ``drd.catalog.sql``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Literal, Protocol, Self

from drd.catalog.records import (
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
)

#: Extra serialization a write transaction needs: "audit" for appends to the audit
#: log, "migrate" for schema migrations (SQLite's BEGIN IMMEDIATE already covers both).
LockKind = Literal["audit", "migrate"]


class Session(Protocol):
    """One open transaction. SQL uses ``?`` placeholders; the backend translates."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; return its rows (``[]`` for statements without rows)."""
        ...


class Dialect(ABC):
    """Per-backend type names for migrations and value conversions for queries."""

    name: ClassVar[str]
    #: Substituted into migration SQL: ``{pk}``, ``{ts}``, ``{json}``, ``{bigint}``, ``{float}``.
    types: ClassVar[Mapping[str, str]]
    #: Appended to a SELECT that is followed by an UPDATE of the same row.
    for_update: ClassVar[str] = ""

    @abstractmethod
    def ts_param(self, value: datetime) -> Any:
        """A UTC-aware datetime as the driver should bind it."""

    @abstractmethod
    def ts_value(self, value: Any) -> datetime:
        """A timestamp column value as a UTC-aware datetime."""

    @abstractmethod
    def json_param(self, value: Any) -> Any:
        """A JSON value (dict, list, None ...) as the driver should bind it."""

    @abstractmethod
    def json_value(self, value: Any) -> Any:
        """A JSON column value as Python objects."""


class Catalog(ABC):
    """The index of runs, backups, snapshots, drills, incidents and the audit log.

    The repository is the truth; the catalog can be rebuilt from it, which is why the
    ``record_*`` methods are idempotent upserts. Each method is one transaction.

    Atomic (all or nothing, serialized against concurrent writers, also from other
    processes):
        ``start_run``, ``finish_run``, ``record_incident``, ``update_incident``,
        ``append_audit`` (concurrent appenders never fork the chain).
    Idempotent (repeating a call with the same arguments changes nothing more):
        ``record_backup`` (by repository, stanza, label), ``record_snapshot`` (by
        repository, id), ``record_drill`` (by workload, started_at), ``forget_backup``,
        ``forget_snapshot``, ``finish_run`` with the status the run already has.
    Read-only:
        ``get_run``, ``list_runs``, ``list_backups``, ``latest_backup``,
        ``list_snapshots``, ``latest_snapshot``, ``list_drills``, ``latest_drill``,
        ``get_incident``, ``list_incidents``, ``audit_entries``, ``verify_audit_chain``,
        ``schema_version``, ``ping``.
    Bounded in time: a call waits for locks at most the backend's lock timeout, then
    raises ``CatalogError``; every driver error becomes ``CatalogError``.

    ``list_*`` return newest first. Datetimes are UTC-aware both ways. JSON values
    are redacted (``drd.redact``) before they are stored, so secrets never land in
    the catalog. Implementations are safe to share between threads.
    """

    #: "sqlite" or "postgresql".
    backend: ClassVar[str]
    #: Where the catalog lives, for messages: a URL with any password masked.
    location: str

    # -- runs ------------------------------------------------------------------------

    @abstractmethod
    def start_run(
        self, kind: str, workload: str | None, details: Mapping[str, Any] | None = None
    ) -> int:
        """Record a run of ``kind`` ('backup', 'snapshot', 'drill' ...) as running; its id."""

    @abstractmethod
    def finish_run(
        self,
        run_id: int,
        status: FinalStatus,
        error: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Run:
        """Mark a running run finished; ``details`` are merged into the run's details.

        Finishing with the status it already has is a no-op; changing the final status
        of a finished run, or finishing an unknown run, raises ``CatalogError``.
        """

    @abstractmethod
    def get_run(self, run_id: int) -> Run | None: ...

    @abstractmethod
    def list_runs(
        self,
        workload: str | None = None,
        kind: str | None = None,
        *,
        status: RunStatus | None = None,
        limit: int = 100,
    ) -> list[Run]: ...

    # -- database backups -----------------------------------------------------------

    @abstractmethod
    def record_backup(self, backup: BackupRecord) -> BackupRecord:
        """Insert or update a backup by (repository, stanza, label); the stored record.

        A ``run_id`` of None keeps the run already linked (a rebuild does not unlink).
        """

    @abstractmethod
    def list_backups(
        self, workload: str | None = None, *, limit: int | None = None
    ) -> list[BackupRecord]: ...

    @abstractmethod
    def latest_backup(
        self, workload: str, *, type: BackupType | None = None
    ) -> BackupRecord | None:
        """The backup of ``workload`` (of ``type`` if given) that stopped last."""

    @abstractmethod
    def forget_backup(self, repository: str, stanza: str, label: str) -> bool:
        """Remove a backup from the index (it was expired); False if it was not there."""

    # -- filestore snapshots ----------------------------------------------------------

    @abstractmethod
    def record_snapshot(self, snapshot: SnapshotRecord) -> SnapshotRecord:
        """Insert or update a snapshot by (repository, id); the stored record."""

    @abstractmethod
    def list_snapshots(
        self, workload: str | None = None, *, limit: int | None = None
    ) -> list[SnapshotRecord]: ...

    @abstractmethod
    def latest_snapshot(self, workload: str) -> SnapshotRecord | None: ...

    @abstractmethod
    def forget_snapshot(self, repository: str, snapshot_id: str) -> bool:
        """Remove a snapshot from the index (it was pruned); False if it was not there."""

    # -- drills -------------------------------------------------------------------------

    @abstractmethod
    def record_drill(self, drill: DrillRecord) -> DrillRecord:
        """Insert or update a drill by (workload, started_at); the stored record with id.

        Record it once when it starts and again when it ends: same row.
        """

    @abstractmethod
    def list_drills(
        self, workload: str | None = None, *, limit: int | None = None
    ) -> list[DrillRecord]: ...

    @abstractmethod
    def latest_drill(
        self, workload: str, *, status: DrillStatus | None = None
    ) -> DrillRecord | None:
        """The drill of ``workload`` (with ``status`` if given) that started last."""

    @abstractmethod
    def latest_drills(self, *, status: DrillStatus | None = None) -> dict[str, DrillRecord]:
        """The newest drill of every workload (with ``status`` if given), in one query."""

    @abstractmethod
    def last_activity(self) -> dict[tuple[str, str], datetime]:
        """When each workload last did each kind of thing, in a few grouped queries:
        ``("backup-full", w)`` ... (newest backup of that type, its stop time),
        ``("snapshot", w)`` (newest snapshot), ``("drill", w)`` (newest drill), and
        ``("run:retention" | "run:snapshot" | "run:drill", w)`` (newest run of that kind,
        whatever its outcome). For the daemon over thousands of workloads."""

    # -- incidents ------------------------------------------------------------------------

    @abstractmethod
    def record_incident(self, incident: IncidentRecord) -> IncidentRecord:
        """Insert a new incident (``id`` must be None); the stored record with its id."""

    @abstractmethod
    def update_incident(
        self,
        incident_id: int,
        *,
        status: IncidentStatus | None = None,
        finished_at: datetime | None = None,
        outcome: str | None = None,
        plan: Mapping[str, Any] | None = None,
    ) -> IncidentRecord:
        """Change the given fields of an incident; ``CatalogError`` if it is unknown."""

    @abstractmethod
    def get_incident(self, incident_id: int) -> IncidentRecord | None: ...

    @abstractmethod
    def list_incidents(
        self, workload: str | None = None, *, limit: int | None = None
    ) -> list[IncidentRecord]: ...

    # -- audit log -------------------------------------------------------------------------

    @abstractmethod
    def append_audit(
        self, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None
    ) -> AuditEntry:
        """Append one entry, chained to the previous one; the entry as stored."""

    @abstractmethod
    def audit_entries(self, since_seq: int = 0, *, limit: int | None = None) -> list[AuditEntry]:
        """Entries with ``seq > since_seq``, oldest first."""

    @abstractmethod
    def verify_audit_chain(self) -> int:
        """Recompute the whole chain; the number of entries, or ``AuditChainError``."""

    # -- housekeeping ----------------------------------------------------------------------

    @abstractmethod
    def schema_version(self) -> int:
        """The newest migration applied to this catalog."""

    @abstractmethod
    def ping(self) -> None:
        """Raise ``CatalogError`` unless the catalog answers a trivial query now."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; idempotent. Later calls raise ``CatalogError``."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""Frozen records the catalog stores and returns.

Every datetime is timezone-aware UTC: records convert aware inputs to UTC on
construction and refuse naive ones (``ValueError``), and both backends return UTC.
Records the caller builds (backups, snapshots, drills, incidents) carry ``id=None``
or ``run_id=None`` until the catalog assigns or links them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

RunStatus = Literal["running", "succeeded", "failed"]
FinalStatus = Literal["succeeded", "failed"]
BackupType = Literal["full", "diff", "incr"]
DrillStatus = Literal["running", "succeeded", "failed"]
IncidentKind = Literal["failover", "switchover"]
IncidentStatus = Literal["planned", "running", "succeeded", "failed", "aborted"]

#: The ``prev_hash`` of the first audit log entry.
GENESIS_HASH = "0" * 64


def to_utc(value: datetime, what: str = "datetime") -> datetime:
    """``value`` in UTC; a naive datetime is a bug in the caller and is refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (got naive {value.isoformat()})")
    return value.astimezone(UTC)


def format_ts(value: datetime) -> str:
    """Fixed-width ISO-8601 UTC (``2024-05-01T03:00:00.000000+00:00``): sorts as it reads."""
    return to_utc(value).isoformat(timespec="microseconds")


def _check_choice(value: str, allowed: Any, what: str) -> None:
    choices = get_args(allowed)
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)} (got {value!r})")


def _utc_fields(record: object, *names: str) -> None:
    for name in names:
        value = getattr(record, name)
        if value is not None:
            object.__setattr__(record, name, to_utc(value, name))


@dataclass(frozen=True)
class Run:
    """One job run (backup, snapshot, drill, retention ...) and how it ended."""

    id: int
    kind: str
    workload: str | None
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice(self.status, RunStatus, "run status")
        _utc_fields(self, "started_at", "finished_at")


@dataclass(frozen=True)
class BackupRecord:
    """One pgBackRest backup set; unique per (repository, stanza, label)."""

    workload: str
    stanza: str
    repository: str
    label: str
    type: BackupType
    started_at: datetime
    stopped_at: datetime
    lsn_start: str | None = None
    lsn_stop: str | None = None
    wal_start: str | None = None
    wal_stop: str | None = None
    size: int | None = None
    repo_size: int | None = None
    run_id: int | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        _check_choice(self.type, BackupType, "backup type")
        _utc_fields(self, "started_at", "stopped_at")


@dataclass(frozen=True)
class SnapshotRecord:
    """One filestore snapshot (hex id) in one repository, with its paired DB restore point."""

    id: str
    workload: str
    repository: str
    created_at: datetime
    files: int
    bytes: int
    added_bytes: int
    parent: str | None = None
    db_restore_point: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    run_id: int | None = None

    def __post_init__(self) -> None:
        _utc_fields(self, "created_at")
        object.__setattr__(self, "tags", tuple(self.tags))


@dataclass(frozen=True)
class DrillRecord:
    """One restore drill with its measured RPO/RTO; unique per (workload, started_at)."""

    workload: str
    t0: datetime
    started_at: datetime
    status: DrillStatus
    finished_at: datetime | None = None
    measured_rpo_seconds: float | None = None
    measured_rto_seconds: float | None = None
    phases: dict[str, Any] = field(default_factory=dict)
    verdict: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        _check_choice(self.status, DrillStatus, "drill status")
        _utc_fields(self, "t0", "started_at", "finished_at")


@dataclass(frozen=True)
class IncidentRecord:
    """One failover or switchover: who, why, the plan, and how it ended."""

    workload: str
    kind: IncidentKind
    status: IncidentStatus
    started_at: datetime
    operator: str
    reason: str
    plan: dict[str, Any] = field(default_factory=dict)
    finished_at: datetime | None = None
    outcome: str | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        _check_choice(self.kind, IncidentKind, "incident kind")
        _check_choice(self.status, IncidentStatus, "incident status")
        _utc_fields(self, "started_at", "finished_at")


@dataclass(frozen=True)
class AuditEntry:
    """One audit log entry; ``hash`` covers every other field (see ``drd.catalog.audit``)."""

    seq: int
    ts: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def __post_init__(self) -> None:
        _utc_fields(self, "ts")

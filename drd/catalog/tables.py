"""How each record maps to its table: columns, conversions, conflict keys (no I/O).

Columns are the record's dataclass fields, in order, so a record and its row cannot
drift apart. Timestamps and JSON go through the ``Dialect``; JSON values are
redacted on the way in (``drd.redact``) so secrets never land in the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from drd.catalog.audit import sanitize_json
from drd.catalog.base import Dialect
from drd.catalog.records import BackupRecord, DrillRecord, IncidentRecord, Run, SnapshotRecord


@dataclass(frozen=True)
class Table:
    name: str
    record: type[Any]
    timestamps: frozenset[str]
    json: frozenset[str] = frozenset()
    #: ON CONFLICT target of the idempotent upsert; empty for insert-only tables.
    key: tuple[str, ...] = ()
    #: Column filled in by the database (identity), left out of INSERTs.
    generated: str | None = "id"
    #: Columns an upsert never clears: a NULL in the new record keeps the stored value.
    sticky: frozenset[str] = frozenset({"run_id"})

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self.record))

    @property
    def select_list(self) -> str:
        return ", ".join(self.columns)

    @property
    def insertable(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c != self.generated)

    def insert_sql(self) -> str:
        cols = self.insertable
        sql = f"INSERT INTO {self.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        if self.key:
            updates = ", ".join(
                f"{c} = COALESCE(excluded.{c}, {self.name}.{c})"
                if c in self.sticky
                else f"{c} = excluded.{c}"
                for c in cols
                if c not in self.key
            )
            sql += f" ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {updates}"
        return f"{sql} RETURNING {self.select_list}"

    def params(self, dialect: Dialect, record: Any) -> list[Any]:
        """The bind values of ``insert_sql`` for ``record``."""
        out: list[Any] = []
        for column in self.insertable:
            value = getattr(record, column)
            if value is not None and column in self.timestamps:
                value = dialect.ts_param(value)
            elif value is not None and column in self.json:
                value = dialect.json_param(sanitize_json(value))
            out.append(value)
        return out

    def from_row(self, dialect: Dialect, row: tuple[Any, ...]) -> Any:
        """The record for a row selected with ``select_list``."""
        values = zip(self.columns, row, strict=True)
        return self.record(**{column: self._out(dialect, column, v) for column, v in values})

    def _out(self, dialect: Dialect, column: str, value: Any) -> Any:
        if value is not None and column in self.timestamps:
            return dialect.ts_value(value)
        if value is not None and column in self.json:
            return dialect.json_value(value)
        return value


RUNS = Table("runs", Run, frozenset({"started_at", "finished_at"}), frozenset({"details"}))
BACKUPS = Table(
    "db_backups",
    BackupRecord,
    frozenset({"started_at", "stopped_at"}),
    key=("repository", "stanza", "label"),
)
SNAPSHOTS = Table(
    "snapshots",
    SnapshotRecord,
    frozenset({"created_at"}),
    frozenset({"db_restore_point", "tags"}),
    key=("repository", "id"),
    generated=None,
)
DRILLS = Table(
    "drills",
    DrillRecord,
    frozenset({"t0", "started_at", "finished_at"}),
    frozenset({"phases", "details"}),
    key=("workload", "started_at"),
)
INCIDENTS = Table(
    "incidents", IncidentRecord, frozenset({"started_at", "finished_at"}), frozenset({"plan"})
)

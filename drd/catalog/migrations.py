"""Versioned schema migrations, applied in order when a catalog is opened.

A migration is (version, description, statements). Shared statements are templates
with a few per-dialect type names (``{pk}``, ``{ts}``, ``{json}``, ``{bigint}``,
``{float}``, see ``Dialect.types``); what cannot be shared (triggers) is given per
dialect. Applied versions are recorded in ``schema_migrations`` (version,
description, applied_at).

``apply_migrations`` runs in one write transaction that the backend serializes
(PostgreSQL: an advisory transaction lock; SQLite: BEGIN IMMEDIATE), so two processes
opening a new catalog at once apply each migration exactly once. A catalog whose
version is newer than this code knows is refused, never downgraded. Never edit a
released migration: append a new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from drd.catalog.base import Dialect, Session
from drd.errors import CatalogError


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...] = ()
    per_dialect: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def render(self, dialect: Dialect) -> list[str]:
        """The statements to run on ``dialect``, shared ones first."""
        shared = [sql.format_map(dialect.types) for sql in self.statements]
        return shared + list(self.per_dialect.get(dialect.name, ()))


BOOTSTRAP = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at {ts} NOT NULL
)"""

_APPEND_ONLY = "audit_log is append-only"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "runs, backups, snapshots, drills, incidents and the audit log",
        (
            """CREATE TABLE runs (
                id {pk},
                kind TEXT NOT NULL,
                workload TEXT,
                status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
                started_at {ts} NOT NULL,
                finished_at {ts},
                error TEXT,
                details {json} NOT NULL
            )""",
            "CREATE INDEX runs_by_workload ON runs (workload, kind, started_at)",
            """CREATE TABLE db_backups (
                id {pk},
                workload TEXT NOT NULL,
                stanza TEXT NOT NULL,
                repository TEXT NOT NULL,
                label TEXT NOT NULL,
                type TEXT NOT NULL CHECK (type IN ('full', 'diff', 'incr')),
                started_at {ts} NOT NULL,
                stopped_at {ts} NOT NULL,
                lsn_start TEXT,
                lsn_stop TEXT,
                wal_start TEXT,
                wal_stop TEXT,
                size {bigint},
                repo_size {bigint},
                run_id {bigint} REFERENCES runs (id) ON DELETE SET NULL,
                UNIQUE (repository, stanza, label)
            )""",
            "CREATE INDEX db_backups_by_workload ON db_backups (workload, stopped_at)",
            """CREATE TABLE snapshots (
                repository TEXT NOT NULL,
                id TEXT NOT NULL,
                workload TEXT NOT NULL,
                created_at {ts} NOT NULL,
                parent TEXT,
                files {bigint} NOT NULL,
                bytes {bigint} NOT NULL,
                added_bytes {bigint} NOT NULL,
                db_restore_point {json},
                tags {json} NOT NULL,
                run_id {bigint} REFERENCES runs (id) ON DELETE SET NULL,
                PRIMARY KEY (repository, id)
            )""",
            "CREATE INDEX snapshots_by_workload ON snapshots (workload, created_at)",
            """CREATE TABLE drills (
                id {pk},
                workload TEXT NOT NULL,
                t0 {ts} NOT NULL,
                started_at {ts} NOT NULL,
                finished_at {ts},
                status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
                measured_rpo_seconds {float},
                measured_rto_seconds {float},
                phases {json} NOT NULL,
                verdict TEXT,
                details {json} NOT NULL,
                run_id {bigint} REFERENCES runs (id) ON DELETE SET NULL,
                UNIQUE (workload, started_at)
            )""",
            """CREATE TABLE incidents (
                id {pk},
                workload TEXT NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('failover', 'switchover')),
                status TEXT NOT NULL,
                started_at {ts} NOT NULL,
                finished_at {ts},
                operator TEXT NOT NULL,
                reason TEXT NOT NULL,
                plan {json} NOT NULL,
                outcome TEXT
            )""",
            "CREATE INDEX incidents_by_workload ON incidents (workload, started_at)",
            # details is the canonical JSON text that was hashed (not jsonb, which would
            # renormalize numbers), so verification recomputes from exactly what is stored.
            """CREATE TABLE audit_log (
                seq {bigint} PRIMARY KEY CHECK (seq > 0),
                ts {ts} NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                subject TEXT NOT NULL,
                details TEXT NOT NULL,
                prev_hash TEXT NOT NULL CHECK (length(prev_hash) = 64),
                hash TEXT NOT NULL UNIQUE CHECK (length(hash) = 64)
            )""",
        ),
    ),
    Migration(
        2,
        "audit_log is append-only: triggers reject UPDATE and DELETE",
        per_dialect={
            "sqlite": (
                f"""CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
                BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}: UPDATE rejected'); END""",
                f"""CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
                BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}: DELETE rejected'); END""",
            ),
            "postgresql": (
                f"""CREATE FUNCTION drd_audit_log_append_only() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN
                    RAISE EXCEPTION '{_APPEND_ONLY}: % rejected', TG_OP
                        USING ERRCODE = 'insufficient_privilege';
                END
                $$""",
                """CREATE TRIGGER audit_log_no_update_delete
                BEFORE UPDATE OR DELETE ON audit_log
                FOR EACH ROW EXECUTE FUNCTION drd_audit_log_append_only()""",
                """CREATE TRIGGER audit_log_no_truncate
                BEFORE TRUNCATE ON audit_log
                FOR EACH STATEMENT EXECUTE FUNCTION drd_audit_log_append_only()""",
            ),
        },
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def apply_migrations(
    session: Session, dialect: Dialect, *, location: str, now: datetime
) -> tuple[int, int]:
    """Bring the schema up to ``LATEST_VERSION``; (version before, version after).

    Must run inside a write transaction that the backend serializes (see module doc).
    """
    session.execute(BOOTSTRAP.format_map(dialect.types))
    applied = {int(row[0]) for row in session.execute("SELECT version FROM schema_migrations")}
    current = max(applied, default=0)
    if current > LATEST_VERSION:
        raise CatalogError(
            f"catalog {location} has schema version {current}, newer than this drd knows "
            f"(up to {LATEST_VERSION}); refusing to use it",
            hint="upgrade drd to the release that wrote this catalog; drd never downgrades",
        )
    for migration in MIGRATIONS:
        if migration.version in applied:
            continue
        for sql in migration.render(dialect):
            session.execute(sql)
        session.execute(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.description, dialect.ts_param(now)),
        )
    return current, LATEST_VERSION

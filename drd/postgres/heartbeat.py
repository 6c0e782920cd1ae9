"""The heartbeat table: a clock written into each protected database.

drd inserts one row every ``postgres.heartbeat_interval`` (tier) into
``drd.drd_heartbeat`` on the primary. The rows travel with the data: through WAL to
the archive, into backups, into every restored copy. That makes them the clock that
survives a restore: a drill reads ``max(ts)`` from its restored copy to measure the RPO
it really got, and the live RPO exposure (``drd.rpo``) compares each row's WAL
position with the end of the archived WAL range. Each beat also generates WAL, so
``archive_timeout`` switches happen on an otherwise idle database.

Table (own schema ``drd``; nothing is written to the application's schemas)::

    drd.drd_heartbeat
        seq     bigint generated always as identity primary key
        ts      timestamptz not null default clock_timestamp()     -- server clock
        lsn     pg_lsn not null default pg_current_wal_insert_lsn() -- before this row's WAL
        writer  text                                                -- "drd@host:pid"

Guarantees, by function:

- idempotent: ``ensure_table`` (CREATE ... IF NOT EXISTS, safe against a concurrent
  creator); ``write_heartbeat`` creates the table itself the first time.
- atomic: ``write_heartbeat`` writes one row in its own transaction (autocommit): a
  beat that returns has committed; one that raises has written nothing.
- bounded in time: every call opens its connection with ``probe.connect`` (connect
  and statement timeouts, default 5 s).
- never fatal: ``run_heartbeat`` logs a failed beat and keeps beating.

Pruning: rows older than ``RETENTION`` (7 days) are deleted by the beat whose ``seq``
is a multiple of ``PRUNE_EVERY`` (100), in the same call after the insert, as its own
statement (at a 10 s interval: one small DELETE every ~17 minutes, which never touches
the newest rows RPO measurement reads). A failed prune fails that beat's call but the
row is already committed; the next multiple of 100 tries again.

Errors are ``PostgresError`` naming the endpoint as ``host:port/db`` (never a
password). A server in recovery (a standby, or a restored copy still replaying) cannot
be written: that is reported as such, not as a generic SQL error.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from drd.config.models import PostgresEndpoint
from drd.errors import PostgresError
from drd.log import get_logger
from drd.postgres.probe import connect
from drd.redact import redact

log = get_logger("drd.postgres.heartbeat")

SCHEMA = "drd"
TABLE = f"{SCHEMA}.drd_heartbeat"
RETENTION = timedelta(days=7)
PRUNE_EVERY = 100
DEFAULT_TIMEOUT = 5.0

_DDL = (
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " ts timestamptz NOT NULL DEFAULT clock_timestamp(),"
    " lsn pg_lsn NOT NULL DEFAULT pg_current_wal_insert_lsn(),"
    " writer text)",
    f"COMMENT ON TABLE {TABLE} IS 'drd heartbeat: the clock that survives a restore"
    " (RPO measurement). Written by drd; safe to drop when drd no longer protects"
    " this database.'",
)
_COLUMNS = "seq, ts, lsn::text"
# SQLSTATEs that mean "this server cannot be written", checked against recovery state.
_READ_ONLY = (pg_errors.ReadOnlySqlTransaction, pg_errors.ObjectNotInPrerequisiteState)
_MISSING = (pg_errors.UndefinedTable, pg_errors.InvalidSchemaName)

Connection = psycopg.Connection[Any]


@dataclass(frozen=True)
class Heartbeat:
    """One row: ``ts`` on the server's clock, ``lsn`` the WAL insert position before it."""

    seq: int
    ts: datetime
    lsn: str


def default_writer() -> str:
    return f"drd@{socket.gethostname()}:{os.getpid()}"


def ensure_table(conn: Connection) -> None:
    """Create schema and table if missing (idempotent; a concurrent creator is fine).

    ``conn`` must be in autocommit mode (``probe.connect`` opens it so).
    """
    for attempt in (1, 2):
        try:
            for statement in _DDL:
                conn.execute(statement.encode())
            return
        except (pg_errors.UniqueViolation, pg_errors.DuplicateObject, pg_errors.DuplicateTable):
            # Two creators raced past IF NOT EXISTS (catalog unique index): the other won.
            if attempt == 2:
                raise


def write_heartbeat(
    endpoint: PostgresEndpoint,
    *,
    writer: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retention: timedelta = RETENTION,
    prune_every: int = PRUNE_EVERY,
) -> Heartbeat:
    """Insert one heartbeat row (own transaction) and return it; prune now and then."""
    where = endpoint.describe()
    try:
        with connect(endpoint, timeout=timeout) as conn:
            try:
                beat = _insert(conn, writer or default_writer())
            except _MISSING:
                _refuse_if_in_recovery(conn, where)
                ensure_table(conn)
                beat = _insert(conn, writer or default_writer())
            except _READ_ONLY:
                _refuse_if_in_recovery(conn, where)
                raise
            if prune_every > 0 and beat.seq % prune_every == 0:
                pruned = prune(conn, retention)
                log.debug("heartbeat_pruned", endpoint=where, rows=pruned)
            return beat
    except psycopg.Error as exc:
        raise _error("heartbeat write to", where, exc) from exc


def prune(conn: Connection, retention: timedelta = RETENTION) -> int:
    """Delete rows older than ``retention`` (server clock); return how many."""
    cur = conn.execute(
        f"DELETE FROM {TABLE} WHERE ts < clock_timestamp() - %s".encode(), (retention,)
    )
    return cur.rowcount


def newest_heartbeat(
    target: Connection | PostgresEndpoint, *, timeout: float = DEFAULT_TIMEOUT
) -> Heartbeat | None:
    """The row with the highest ``seq``; None when there is none (or no table yet)."""
    return _select(target, None, timeout)


def newest_heartbeat_before_lsn(
    target: Connection | PostgresEndpoint, lsn: str, *, timeout: float = DEFAULT_TIMEOUT
) -> Heartbeat | None:
    """The newest row whose recorded ``lsn`` is strictly below ``lsn`` ('0/5000000')."""
    return _select(target, lsn, timeout)


def oldest_heartbeat(
    target: Connection | PostgresEndpoint, *, timeout: float = DEFAULT_TIMEOUT
) -> Heartbeat | None:
    """The row with the lowest ``seq`` still kept (pruning removes older ones)."""
    return _select(target, None, timeout, oldest=True)


def run_heartbeat(
    endpoint: PostgresEndpoint,
    interval: float,
    stop: threading.Event,
    *,
    timeout: float | None = None,
    on_beat: Callable[[Heartbeat], None] | None = None,
    write: Callable[..., Heartbeat] = write_heartbeat,
) -> int:
    """Write a beat every ``interval`` seconds until ``stop`` is set; return beats written.

    Beats are scheduled on a fixed grid (no drift); a beat slower than the interval
    skips the slots it overran. A failed beat is logged (warning on the first failure
    and whenever the error changes, debug while it repeats, info on recovery) and the
    loop goes on. ``on_beat`` (e.g. a metrics update) runs after each successful beat;
    its failures are logged too and never stop the loop.
    """
    if interval <= 0:
        raise ValueError("heartbeat interval must be positive")
    where = endpoint.describe()
    beat_timeout = timeout if timeout is not None else min(DEFAULT_TIMEOUT, max(1.0, interval))
    written = failures = 0
    last_error: str | None = None
    next_at = time.monotonic()
    while not stop.is_set():
        try:
            beat = write(endpoint, timeout=beat_timeout)
        except Exception as exc:  # a failed beat must never end the loop
            failures += 1
            message = str(exc)
            level = log.warning if message != last_error else log.debug
            level("heartbeat_failed", endpoint=where, failed_beats=failures, error=message)
            last_error = message
        else:
            written += 1
            if failures:
                log.info("heartbeat_recovered", endpoint=where, failed_beats=failures)
                failures, last_error = 0, None
            if on_beat is not None:
                try:
                    on_beat(beat)
                except Exception:  # a callback bug must not stop the clock
                    log.exception("heartbeat_callback_failed", endpoint=where)
        now = time.monotonic()
        next_at += interval
        if next_at < now:  # overran: skip the missed slots, stay on the grid
            next_at += math.ceil((now - next_at) / interval) * interval
        stop.wait(next_at - now)
    return written


# -- internals -----------------------------------------------------------------------


def _insert(conn: Connection, writer: str) -> Heartbeat:
    row = conn.execute(
        f"INSERT INTO {TABLE} (writer) VALUES (%s) RETURNING {_COLUMNS}".encode(), (writer,)
    ).fetchone()
    if row is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
        raise PostgresError("heartbeat insert returned no row")
    return _beat(row)


def _select(
    target: Connection | PostgresEndpoint,
    before_lsn: str | None,
    timeout: float,
    *,
    oldest: bool = False,
) -> Heartbeat | None:
    if isinstance(target, PostgresEndpoint):
        where = target.describe()
        try:
            with connect(target, timeout=timeout) as conn:
                return _query(conn, before_lsn, oldest)
        except psycopg.Error as exc:
            raise _error("heartbeat read from", where, exc) from exc
    try:
        return _query(target, before_lsn, oldest)
    except psycopg.Error as exc:
        raise _error("heartbeat read from", _describe(target), exc) from exc


def _query(conn: Connection, before_lsn: str | None, oldest: bool) -> Heartbeat | None:
    # Both forms walk the primary key index from the newest end; the rows above an LSN
    # bound are the few written since the last archived segment, so this stays cheap.
    where = "WHERE lsn < %s::pg_lsn " if before_lsn is not None else ""
    order = "ASC" if oldest else "DESC"
    params = (before_lsn,) if before_lsn is not None else None
    sql = f"SELECT {_COLUMNS} FROM {TABLE} {where}ORDER BY seq {order} LIMIT 1"
    try:
        row = conn.execute(sql.encode(), params).fetchone()
    except _MISSING:
        return None  # never written here (or a copy from before drd protected it)
    return _beat(row) if row is not None else None


def _beat(row: tuple[Any, ...]) -> Heartbeat:
    return Heartbeat(seq=int(row[0]), ts=row[1], lsn=str(row[2]))


def _refuse_if_in_recovery(conn: Connection, where: str) -> None:
    row = conn.execute(b"SELECT pg_is_in_recovery()").fetchone()
    if row is not None and row[0]:
        raise PostgresError(
            f"cannot write a heartbeat to {where}: the server is in recovery "
            "(a standby or a copy still replaying WAL), so it is read-only",
            hint="point the workload's postgres.primary at the primary server",
        )


def _describe(conn: Connection) -> str:
    info = conn.info
    return f"{info.host}:{info.port}/{info.dbname}"


def _error(action: str, where: str, exc: psycopg.Error) -> PostgresError:
    detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    hint = None
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        hint = (
            f"drd's user needs CREATE on the database (or a schema {SCHEMA} it owns) "
            f"and INSERT/SELECT/DELETE on {TABLE}"
        )
    elif isinstance(exc, psycopg.OperationalError):
        hint = "check that the server is up and reachable from drd"
    return PostgresError(f"{action} {where} failed: {detail}", hint=hint)

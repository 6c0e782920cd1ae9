"""Drill verification checks, as data: each returns a ``CheckOutcome``, never raises
for a failed check (only for a broken call, e.g. a closed connection).

- ``check_server_ready``: the restored server answers queries and is out of recovery.
- ``newest_heartbeat``: ``max(ts)`` of ``drd.drd_heartbeat`` in the copy (the RPO clock).
- ``run_amcheck``: ``bt_index_check`` on every btree index (user schemas and catalogs).
- ``run_custom_check``: an operator's SQL whose first value must equal ``expected``.

Every statement runs under a statement timeout (bounded in time); each index check
and each custom check runs in its own transaction or savepoint, so one failure does
not abort the others. Custom checks run READ ONLY.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from drd.log import get_logger
from drd.postgres.heartbeat import TABLE as HEARTBEAT_TABLE
from drd.redact import redact

log = get_logger("drd.drill.checks")

Connection = psycopg.Connection[Any]

DEFAULT_TIMEOUT = 30.0
_MISSING = (pg_errors.UndefinedTable, pg_errors.InvalidSchemaName)

# Btree indexes in user schemas and the catalogs, user schemas first (so max_indexes
# keeps the application's); other sessions' temp schemas cannot be checked.
_INDEXES_SQL = b"""
SELECT c.oid::regclass::text
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = c.relam
WHERE am.amname = 'btree' AND i.indisvalid AND i.indisready
  AND c.relpersistence <> 't'
  AND n.nspname <> 'information_schema'
  AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
ORDER BY n.nspname IN ('pg_catalog', 'pg_toast'), n.nspname, c.relname
"""


_BT_INDEX_CHECK = b"SELECT bt_index_check(%s::regclass, %s)"


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result; a failed ``critical`` check fails the drill."""

    name: str
    ok: bool
    detail: str
    critical: bool = True


def check_server_ready(conn: Connection, *, timeout: float = DEFAULT_TIMEOUT) -> CheckOutcome:
    """The server accepts queries and is not in recovery (promoted, writable)."""
    name = "server_ready"
    try:
        with conn.transaction():
            _timeout(conn, timeout)
            row = conn.execute(b"SELECT pg_is_in_recovery(), current_setting('server_version')")
            values = row.fetchone()
    except psycopg.Error as exc:
        return CheckOutcome(name, False, f"query failed: {_first_line(exc)}")
    if values is None:  # pragma: no cover - SELECT without FROM returns a row
        return CheckOutcome(name, False, "no answer to SELECT pg_is_in_recovery()")
    if values[0]:
        return CheckOutcome(name, False, "server is still in recovery (not promoted)")
    return CheckOutcome(name, True, f"accepting queries, not in recovery (PostgreSQL {values[1]})")


def newest_heartbeat(conn: Connection, *, timeout: float = DEFAULT_TIMEOUT) -> datetime | None:
    """``max(ts)`` of ``drd.drd_heartbeat``; None when the table is missing or empty."""
    try:
        with conn.transaction():
            _timeout(conn, timeout)
            row = conn.execute(f"SELECT max(ts) FROM {HEARTBEAT_TABLE}".encode()).fetchone()
    except _MISSING:
        return None
    value = row[0] if row else None
    return value if isinstance(value, datetime) else None


def run_amcheck(
    conn: Connection,
    *,
    max_indexes: int | None = None,
    heapallindexed: bool = False,
    timeout: float = 300.0,
) -> CheckOutcome:
    """``bt_index_check`` every btree index; the detail names each failing index.

    Needs a writable copy the first time (CREATE EXTENSION IF NOT EXISTS amcheck).
    ``timeout`` bounds each index check.
    """
    name = "amcheck"
    try:
        with conn.transaction():
            conn.execute(b"CREATE EXTENSION IF NOT EXISTS amcheck")
        indexes = [str(r[0]) for r in conn.execute(_INDEXES_SQL).fetchall()]
    except psycopg.Error as exc:
        return CheckOutcome(name, False, f"amcheck unavailable: {_first_line(exc)}")
    if max_indexes is not None:
        indexes = indexes[:max_indexes]
    if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        failed = _check_autocommit(conn, indexes, heapallindexed, timeout)
    else:
        failed = []
        for index in indexes:
            try:
                with conn.transaction():
                    _timeout(conn, timeout)
                    conn.execute(_BT_INDEX_CHECK, (index, heapallindexed))
            except psycopg.Error as exc:
                failed.append(f"{index}: {_first_line(exc)}")
    log.info("drill_amcheck", indexes=len(indexes), failed=len(failed))
    if failed:
        return CheckOutcome(
            name,
            False,
            f"{len(failed)} of {len(indexes)} btree indexes failed: " + "; ".join(failed),
        )
    return CheckOutcome(name, True, f"{len(indexes)} btree indexes checked, all ok")


def _check_autocommit(
    conn: Connection, indexes: list[str], heapallindexed: bool, timeout: float
) -> list[str]:
    """One round trip per index: in autocommit each statement is its own transaction
    (a failed check does not abort the next) and a session ``statement_timeout``
    bounds each check; the session's own value is put back afterwards."""
    failed: list[str] = []
    row = conn.execute(
        b"SELECT current_setting('statement_timeout'), set_config('statement_timeout', %s, false)",
        (_millis(timeout),),
    ).fetchone()
    try:
        for index in indexes:
            try:
                conn.execute(_BT_INDEX_CHECK, (index, heapallindexed))
            except psycopg.Error as exc:
                failed.append(f"{index}: {_first_line(exc)}")
    finally:
        if row is not None:
            with contextlib.suppress(psycopg.Error):  # a broken connection says so later
                conn.execute(b"SELECT set_config('statement_timeout', %s, false)", (row[0],))
    return failed


def run_custom_check(
    conn: Connection,
    name: str,
    sql: str,
    expected: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    critical: bool = True,
) -> CheckOutcome:
    """Run ``sql`` READ ONLY; pass when its first value, as PostgreSQL text, is ``expected``.

    Text as PostgreSQL prints it: booleans are ``t``/``f``, numbers as written.
    """
    try:
        with conn.transaction():
            conn.execute(b"SET TRANSACTION READ ONLY")
            _timeout(conn, timeout)
            cur = conn.execute(sql.encode())
            result = cur.pgresult
            if result is None or result.ntuples == 0 or result.nfields == 0:
                return CheckOutcome(name, False, "query returned no rows", critical)
            raw = result.get_value(0, 0)
    except pg_errors.QueryCanceled:
        return CheckOutcome(name, False, f"timed out after {timeout:g} s", critical)
    except psycopg.Error as exc:
        return CheckOutcome(name, False, f"query failed: {_first_line(exc)}", critical)
    if raw is None:
        return CheckOutcome(name, False, f"got NULL, expected {expected!r}", critical)
    got = bytes(raw).decode("utf-8", errors="replace")
    if got != expected:
        return CheckOutcome(name, False, f"got {got!r}, expected {expected!r}", critical)
    return CheckOutcome(name, True, f"got {got!r} as expected", critical)


def _timeout(conn: Connection, seconds: float) -> None:
    conn.execute(b"SELECT set_config('statement_timeout', %s, true)", (_millis(seconds),))


def _millis(seconds: float) -> str:
    return f"{max(1, int(seconds * 1000))}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)

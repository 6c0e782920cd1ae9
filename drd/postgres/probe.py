"""Read-only probes of a PostgreSQL server: is it up, is it a primary, does it archive.

Bounded in time (connect_timeout and statement_timeout), never raises for an
unreachable server: the result says so, because status pages and preflight checks
must report a dead primary, not crash on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from drd.config.models import PostgresEndpoint
from drd.redact import redact


@dataclass(frozen=True)
class ArchiverState:
    archived_count: int
    last_archived_wal: str | None
    last_archived_time: datetime | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_time: datetime | None


@dataclass(frozen=True)
class ServerState:
    endpoint: str
    reachable: bool
    error: str | None = None
    server_version: int | None = None
    in_recovery: bool | None = None
    system_identifier: int | None = None
    timeline: int | None = None
    archive_mode: str | None = None
    archive_command: str | None = None
    archive_timeout_seconds: int | None = None
    archiver: ArchiverState | None = None


def connect(
    endpoint: PostgresEndpoint, *, timeout: float = 5.0, **kwargs: Any
) -> psycopg.Connection[Any]:
    """Open a connection; the password (if any) comes from its secret reference."""
    password = endpoint.password.get().get_secret_value() if endpoint.password else None
    return psycopg.connect(
        host=endpoint.host,
        port=endpoint.port,
        user=endpoint.user,
        dbname=endpoint.dbname,
        password=password,
        sslmode=endpoint.sslmode,
        connect_timeout=max(1, int(timeout)),
        options=f"-c statement_timeout={int(timeout * 1000)}",
        application_name="drd",
        autocommit=True,
        **kwargs,
    )


def probe(endpoint: PostgresEndpoint, *, timeout: float = 5.0) -> ServerState:
    where = endpoint.describe()
    try:
        with connect(endpoint, timeout=timeout) as conn:
            row = conn.execute(
                "SELECT current_setting('server_version_num')::int, pg_is_in_recovery(),"
                " (SELECT system_identifier FROM pg_control_system()),"
                " (SELECT timeline_id FROM pg_control_checkpoint()),"
                " current_setting('archive_mode'), current_setting('archive_command'),"
                " current_setting('archive_timeout')"
            ).fetchone()
            arch = conn.execute(
                "SELECT archived_count, last_archived_wal, last_archived_time,"
                " failed_count, last_failed_wal, last_failed_time FROM pg_stat_archiver"
            ).fetchone()
    except psycopg.Error as exc:
        return ServerState(endpoint=where, reachable=False, error=redact(str(exc).strip()))
    if row is None or arch is None:  # pragma: no cover - these queries always return a row
        return ServerState(endpoint=where, reachable=False, error="probe queries returned no row")
    timeout_text = str(row[6])
    return ServerState(
        endpoint=where,
        reachable=True,
        server_version=int(row[0]),
        in_recovery=bool(row[1]),
        system_identifier=int(row[2]),
        timeline=int(row[3]),
        archive_mode=str(row[4]),
        archive_command=redact(str(row[5])),
        archive_timeout_seconds=_seconds(timeout_text),
        archiver=ArchiverState(*arch),
    )


def _seconds(setting: str) -> int | None:
    """``archive_timeout`` as shown by current_setting ('1min', '30s', '0')."""
    units = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}
    for unit in sorted(units, key=len, reverse=True):
        if setting.endswith(unit) and setting[: -len(unit)].isdigit():
            return int(int(setting[: -len(unit)]) * units[unit])
    return int(setting) if setting.isdigit() else None

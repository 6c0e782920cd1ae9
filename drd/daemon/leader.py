"""Exactly one daemon schedules: leader election.

PostgreSQL catalog (cluster mode, several replicas): the leader holds a session-level
advisory lock on a connection of its own. PostgreSQL releases it when that session ends
(process killed, node gone, connection cut), and a follower polling
``pg_try_advisory_lock`` takes over within one poll interval (``POLL``). The leader
checks its session every ``POLL`` too; if the check fails it steps down at once and
cancels its running jobs (their process groups are killed), so it does not keep
working next to its successor. Jobs also die with a killed daemon (runner.py), so a
job is never run twice at the same time.

SQLite catalog (single host): one daemon per state directory, enforced by an exclusive
``flock`` on ``state_dir/daemon.lock``; a second daemon refuses to start, naming the
first one's pid. The kernel drops the lock when the process dies, however it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any, Protocol

import psycopg

from drd.catalog import Catalog
from drd.daemon.state import Role
from drd.errors import LockError
from drd.log import get_logger

log = get_logger("drd.daemon")

#: Advisory lock key (two int4): "drd" and the purpose.
LOCK_CLASS = 0x647264
LEADER_KEY = 1
#: Seconds between a follower's attempts and between the leader's self-checks.
POLL = 2.0


class Leadership(Protocol):
    role: Role

    def poll(self) -> Role:
        """Try to become (or check that we still are) the leader; the role now."""

    def release(self) -> None: ...


class FileLeadership:
    """Single host: the daemon that holds ``state_dir/daemon.lock`` leads; no second one."""

    def __init__(self, state_dir: Path) -> None:
        self.role: Role = "unknown"
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "daemon.lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise LockError(
                f"another drd daemon (pid {holder}) is running on state directory {state_dir}",
                hint="stop it first; for several replicas use a postgresql:// catalog",
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def poll(self) -> Role:
        """The lock is held since construction; the first poll reports it, so the
        daemon's leader start-up (catch-up) runs like in cluster mode."""
        if self._fd >= 0 and self.role != "leader":
            self.role = "leader"
            log.info("leader_role_changed", role="leader", previous="unknown")
        return self.role

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = -1
        self.role = "unknown"


class PostgresLeadership:
    """Cluster mode: a session advisory lock on a dedicated catalog connection."""

    def __init__(self, catalog: Any, *, check_timeout_ms: int = 2000) -> None:
        self.role: Role = "unknown"
        self._catalog = catalog
        self._timeout = check_timeout_ms
        self._conn: psycopg.Connection[Any] | None = None

    def _session(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self._catalog.connect_dedicated("drd-leader")
            self._conn.execute(f"SET statement_timeout = {int(self._timeout)}")
        return self._conn

    def poll(self) -> Role:
        before = self.role
        try:
            conn = self._session()
            if self.role == "leader":
                conn.execute("SELECT 1")
            else:
                row = conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, LEADER_KEY)
                ).fetchone()
                self.role = "leader" if row and row[0] else "follower"
        except (psycopg.Error, OSError) as exc:
            # A broken session has lost the lock (the server ends it): step down now.
            self._drop()
            self.role = "unknown"
            log.warning("leader_session_lost", error=str(exc).strip()[:200])
        if self.role != before:
            log.info("leader_role_changed", role=self.role, previous=before)
        return self.role

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def release(self) -> None:
        if self._conn is not None and self.role == "leader":
            with contextlib.suppress(Exception):
                self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, LEADER_KEY))
        self._drop()
        self.role = "unknown"


def leadership_for(catalog: Catalog, state_dir: Path) -> Leadership:
    """PostgreSQL catalogs elect a leader; SQLite allows one daemon per state dir."""
    if catalog.backend == "postgresql":
        return PostgresLeadership(catalog)
    return FileLeadership(state_dir)

"""SQLite backend: the default catalog, one file in WAL mode; ``:memory:`` for unit tests.

URL: ``sqlite:///abs/path`` (``sqlite:////abs/path`` means the same); relative paths are
refused. ``sqlite:///:memory:`` is a private in-memory catalog, the fake for unit tests.

Thread safety: one connection per catalog object (``check_same_thread=False``) shared
by all threads and guarded by a lock, so calls are serialized in this object. Several
objects or processes on the same file serialize their writes in SQLite itself: every
write transaction starts with ``BEGIN IMMEDIATE`` and waits up to the busy timeout for
the write lock, then fails with ``CatalogError``. WAL mode lets readers run meanwhile.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from drd.catalog.base import Dialect, LockKind, Session
from drd.catalog.records import format_ts, to_utc
from drd.catalog.sql import SqlCatalog
from drd.errors import CatalogError
from drd.log import get_logger
from drd.redact import redact
from drd.retry import RetryPolicy

log = get_logger("drd.catalog")

MEMORY = ":memory:"
BUSY_TIMEOUT_SECONDS = 30.0
_PREFIX = "sqlite:///"


def sqlite_path(url: str) -> str:
    """The file path (or ``:memory:``) of a ``sqlite:///`` URL."""
    rest = url[len(_PREFIX) :] if url.startswith(_PREFIX) else ""
    if not rest:
        raise CatalogError(
            f"invalid SQLite catalog URL {redact(url)!r}",
            hint="use sqlite:///absolute/path/catalog.sqlite3 or sqlite:///:memory:",
        )
    if rest == MEMORY:
        return MEMORY
    return "/" + rest.lstrip("/")


class SqliteDialect(Dialect):
    name = "sqlite"
    types: ClassVar[Mapping[str, str]] = {
        "pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "ts": "TEXT",  # fixed-width ISO-8601 UTC: sorts chronologically as text
        "json": "TEXT",
        "bigint": "INTEGER",
        "float": "REAL",
    }

    def ts_param(self, value: datetime) -> Any:
        return format_ts(value)

    def ts_value(self, value: Any) -> datetime:
        return to_utc(datetime.fromisoformat(str(value)), "stored timestamp")

    def json_param(self, value: Any) -> Any:
        return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))

    def json_value(self, value: Any) -> Any:
        return json.loads(value)


class _SqliteSession:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, tuple(params)).fetchall()


def _reason(exc: BaseException) -> str:
    return " ".join(redact(str(exc) or type(exc).__name__).split())


class SqliteCatalog(SqlCatalog):
    """The catalog in one SQLite file (see the module docstring for thread safety)."""

    backend = "sqlite"

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = BUSY_TIMEOUT_SECONDS,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self.path = sqlite_path(url)
        location = f"{_PREFIX}{MEMORY}" if self.path == MEMORY else f"sqlite://{self.path}"
        super().__init__(SqliteDialect(), location, clock)
        self._conn = self._connect(busy_timeout)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise
        log.debug("catalog_opened", backend=self.backend, location=self.location)

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        where = f"SQLite catalog {self.path}"
        try:
            if self.path != MEMORY:
                Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                # Create it private: the catalog holds the audit trail.
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise CatalogError(
                f"cannot open {where}: {_reason(exc)}",
                hint="check that the directory exists or can be created and is writable by drd",
            ) from exc
        mode = "memory"
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            if self.path != MEMORY:
                mode = _enable_wal(conn, busy_timeout)
        except sqlite3.Error as exc:
            conn.close()
            raise CatalogError(f"cannot open {where}: {_reason(exc)}") from exc
        if mode not in ("wal", "memory"):
            conn.close()
            raise CatalogError(
                f"cannot use {where}: journal_mode is {mode!r}, not 'wal'",
                hint="put the catalog on a local filesystem (WAL needs shared memory)",
            )
        return conn

    @contextmanager
    def _session(
        self, what: str, *, write: bool = False, lock: LockKind | None = None
    ) -> Iterator[Session]:
        del lock  # BEGIN IMMEDIATE already serializes every writer, migrations included
        with self._lock:
            conn = self._conn
            if conn is None:
                raise CatalogError(f"catalog {self.location} is closed")
            try:
                if write:
                    conn.execute("BEGIN IMMEDIATE")
                try:
                    yield _SqliteSession(conn)
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                if conn.in_transaction:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise CatalogError(
                    f"catalog {what} failed on {self.location}: {_reason(exc)}"
                ) from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _enable_wal(conn: sqlite3.Connection, busy_timeout: float) -> str:
    """Switch to WAL, retrying while another opener holds the lock.

    Changing the journal mode can fail at once with "database is locked" without
    going through the busy handler (seen when several processes open a new catalog
    together), so the busy timeout alone does not cover it.
    """
    policy = RetryPolicy(
        attempts=1000,
        deadline=busy_timeout,
        base_delay=0.01,
        max_delay=0.2,
        retryable=lambda exc: isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc),
    )
    row = policy.call(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
    return str(row[0]).lower()

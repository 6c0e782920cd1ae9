"""PostgreSQL backend (cluster mode) over psycopg 3.

URL: ``postgresql://user@host:port/dbname`` (libpq URI, ``postgres://`` too). The
password is given separately and reaches libpq only as the ``password=`` keyword; it
is registered for redaction and never appears in log events or exception text.

Thread safety: one connection per catalog object, shared by all threads and guarded
by a lock, so calls are serialized in this object. Several objects or processes
serialize in the server: an advisory transaction lock around migrations, ``LOCK TABLE
audit_log IN EXCLUSIVE MODE`` around audit appends (readers are not blocked) and
``SELECT ... FOR UPDATE`` before read-modify-write updates; every lock wait is bounded
by ``lock_timeout``. A connection found broken (server restart, catalog failover) makes
that call fail with ``CatalogError`` and is replaced on the next call.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from drd.catalog.base import Dialect, LockKind, Session
from drd.catalog.records import to_utc
from drd.catalog.sql import SqlCatalog
from drd.errors import CatalogError
from drd.log import get_logger
from drd.redact import MASK, redact, register_secret

log = get_logger("drd.catalog")

#: Key of the advisory lock taken while migrating ("drd-cat" in ASCII).
MIGRATION_LOCK_KEY = 0x6472642D636174
CONNECT_TIMEOUT_SECONDS = 10
LOCK_TIMEOUT = "30s"
_CONNECT_HINT = (
    "check that the PostgreSQL server is running and reachable, and the catalog URL "
    "and catalog_password"
)


class PostgresDialect(Dialect):
    name = "postgresql"
    types: ClassVar[Mapping[str, str]] = {
        "pk": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "ts": "TIMESTAMPTZ",
        "json": "JSONB",
        "bigint": "BIGINT",
        "float": "DOUBLE PRECISION",
    }
    for_update = " FOR UPDATE"

    def ts_param(self, value: datetime) -> Any:
        return to_utc(value)

    def ts_value(self, value: Any) -> datetime:
        if not isinstance(value, datetime):
            raise CatalogError(f"expected a timestamptz from the catalog, got {type(value)}")
        return to_utc(value, "stored timestamp")

    def json_param(self, value: Any) -> Any:
        return None if value is None else Jsonb(value)

    def json_value(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str | bytes) else value


class _PgSession:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # Without parameters the text goes as is (plpgsql bodies may contain '%').
        if params:
            cursor = self._conn.execute(sql.replace("?", "%s"), tuple(params))
        else:
            cursor = self._conn.execute(sql)
        return cursor.fetchall() if cursor.description is not None else []


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


class PostgresCatalog(SqlCatalog):
    """The catalog in a PostgreSQL database (see the module docstring for thread safety)."""

    backend = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        password: SecretStr | None = None,
        connect_timeout: int = CONNECT_TIMEOUT_SECONDS,
        lock_timeout: str = LOCK_TIMEOUT,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False
        self._url = url
        self._password = password
        self._connect_timeout = connect_timeout
        self._lock_timeout = lock_timeout
        secrets = [password.get_secret_value() if password else None, _url_password(url)]
        self._secrets = tuple(s for s in secrets if s)
        for secret in self._secrets:
            register_secret(secret)
        super().__init__(PostgresDialect(), self._scrub(url), clock)
        try:
            with self._lock:
                self._conn = self._connect()
            self._migrate()
        except BaseException:
            self.close()
            raise
        log.debug("catalog_opened", backend=self.backend, location=self.location)

    def _scrub(self, text: str) -> str:
        """``text`` on one line with every password masked (ours even if short)."""
        text = redact(text)
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return " ".join(text.split())

    def connect_dedicated(self, application_name: str) -> psycopg.Connection[Any]:
        """A new session of its own (same server, user, password), for session-scoped
        state such as the daemon's leader lock: it must not share the catalog's
        connection, which is replaced when it breaks."""
        return self._connect(application_name)

    def _connect(self, application_name: str = "drd-catalog") -> psycopg.Connection[Any]:
        try:
            given = conninfo_to_dict(self._url)
        except psycopg.Error as exc:
            raise CatalogError(
                f"invalid PostgreSQL catalog URL {self.location}: {self._scrub(str(exc))}",
                hint="use postgresql://user@host:port/dbname; give the password separately",
            ) from exc
        extra: dict[str, Any] = {}
        if "connect_timeout" not in given:
            extra["connect_timeout"] = self._connect_timeout
        if "application_name" not in given:
            extra["application_name"] = application_name
        if self._password is not None:
            extra["password"] = self._password.get_secret_value()
        try:
            conn = psycopg.connect(self._url, autocommit=True, **extra)
        except psycopg.Error as exc:
            raise CatalogError(
                f"cannot connect to catalog {self.location}: {self._scrub(str(exc))}",
                hint=_CONNECT_HINT,
            ) from exc
        try:
            conn.execute("SET TimeZone = 'UTC'")
            conn.execute("SET client_min_messages = warning")
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (self._lock_timeout,))
        except psycopg.Error as exc:
            conn.close()
            raise CatalogError(
                f"cannot set up the session on catalog {self.location}: {self._scrub(str(exc))}"
            ) from exc
        return conn

    def _connection(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise CatalogError(f"catalog {self.location} is closed")
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    @contextmanager
    def _session(
        self, what: str, *, write: bool = False, lock: LockKind | None = None
    ) -> Iterator[Session]:
        del write  # every call is a transaction; writers serialize on row and table locks
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    if lock == "audit":
                        conn.execute("LOCK TABLE audit_log IN EXCLUSIVE MODE")
                    elif lock == "migrate":
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
                    yield _PgSession(conn)
            except psycopg.Error as exc:
                if conn.broken or conn.closed:
                    conn.close()
                    self._conn = None
                raise CatalogError(
                    f"catalog {what} failed on {self.location}: {self._scrub(str(exc))}"
                ) from exc

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

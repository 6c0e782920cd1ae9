"""Catalog fixtures: every backend-level test runs on SQLite (a file) and real PostgreSQL.

``target`` says where a fresh, empty catalog lives and gives raw driver access for
checks the catalog API must not offer (reading schema tables, bypassing the audit
triggers to simulate tampering). ``catalog`` is that catalog, opened (so migrated).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from drd.catalog import Catalog, open_catalog
from drd.catalog.sqlite import sqlite_path


@dataclass(frozen=True)
class Target:
    """Where one test's catalog lives, with raw (non-catalog) SQL access to it."""

    backend: str
    url: str

    def raw(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement outside the catalog API (``?`` placeholders), autocommit."""
        if self.backend == "sqlite":
            with closing(sqlite3.connect(sqlite_path(self.url), isolation_level=None)) as conn:
                return conn.execute(sql, tuple(params)).fetchall()
        with psycopg.connect(self.url, autocommit=True) as pg:
            query = sql.replace("?", "%s").encode()
            cursor = pg.execute(query, tuple(params) if params else None)
            return cursor.fetchall() if cursor.description else []

    def tamper(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Change audit_log behind drd's back: bypass the append-only triggers first.

        SQLite: drop the triggers (they are not recreated: the catalog is throwaway).
        PostgreSQL: disable them as superuser around the statement.
        """
        if self.backend == "sqlite":
            self.raw("DROP TRIGGER IF EXISTS audit_log_no_update")
            self.raw("DROP TRIGGER IF EXISTS audit_log_no_delete")
            self.raw(sql, params)
            return
        with psycopg.connect(self.url, autocommit=True) as pg, pg.transaction():
            pg.execute(b"ALTER TABLE audit_log DISABLE TRIGGER ALL")
            pg.execute(sql.replace("?", "%s").encode(), tuple(params) if params else None)
            pg.execute(b"ALTER TABLE audit_log ENABLE TRIGGER ALL")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """A location for a fresh catalog: a file under tmp_path, or a new database."""
    if request.param == "sqlite":
        return Target("sqlite", f"sqlite://{tmp_path}/state/catalog.sqlite3")
    return Target("postgresql", str(request.getfixturevalue("pg_database")))


@pytest.fixture
def catalog(target: Target) -> Iterator[Catalog]:
    """The catalog at ``target``, opened (and so migrated); closed after the test."""
    opened = open_catalog(target.url)
    yield opened
    opened.close()
